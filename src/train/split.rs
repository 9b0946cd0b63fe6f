//! Splitting training windows by time: per machine, the last part of its history is held out
//! (validation for early stopping and threshold calibration), with a gap in between so no
//! held-out window shares a sample with a training window.

use std::collections::BTreeMap;

use crate::window::Window;

/// Windows for fitting and windows held out, each in time order per machine.
#[derive(Debug, Default)]
pub(crate) struct Split<'a> {
    pub(crate) train: Vec<&'a Window>,
    pub(crate) heldout: Vec<&'a Window>,
    /// Windows dropped between the two parts, all machines together.
    pub(crate) skipped: usize,
}

/// Per machine (ordered by `end_ms`): the last `ceil(fraction · n)` windows are held out and the
/// `gap` windows before them dropped. A machine whose training part would come out smaller than
/// its held-out part keeps all its windows for training.
pub(crate) fn split_by_machine(windows: &[Window], fraction: f64, gap: usize) -> Split<'_> {
    let mut by_machine: BTreeMap<&str, Vec<&Window>> = BTreeMap::new();
    for window in windows {
        by_machine
            .entry(window.equipment_id.as_str())
            .or_default()
            .push(window);
    }
    let mut split = Split::default();
    for (_, mut machine) in by_machine {
        machine.sort_by_key(|w| w.end_ms);
        let n = machine.len();
        let held = ((fraction * n as f64).ceil() as usize).min(n);
        let train = n.saturating_sub(held + gap);
        if held == 0 || train < held {
            split.train.extend(machine);
            continue;
        }
        split.heldout.extend(&machine[n - held..]);
        split.train.extend(&machine[..train]);
        split.skipped += gap;
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::EquipmentId;

    fn windows(machine: &str, n: usize) -> Vec<Window> {
        (0..n)
            .map(|i| Window {
                equipment_id: EquipmentId::try_from(machine).unwrap(),
                start_ms: i as i64 * 10,
                end_ms: i as i64 * 10 + 9,
                channels: 1,
                len: 1,
                values: vec![0.0],
                mask: vec![true],
                sources: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn holds_out_the_tail_of_each_machine_with_a_gap() {
        let mut all = windows("a", 100);
        all.extend(windows("b", 50));
        all.reverse(); // order must not matter
        let split = split_by_machine(&all, 0.2, 4);
        assert_eq!(split.heldout.len(), 20 + 10);
        assert_eq!(split.train.len(), 76 + 36);
        assert_eq!(split.skipped, 8);
        for machine in ["a", "b"] {
            let last_train = split
                .train
                .iter()
                .filter(|w| w.equipment_id.as_str() == machine)
                .map(|w| w.start_ms)
                .max()
                .unwrap();
            let first_held = split
                .heldout
                .iter()
                .filter(|w| w.equipment_id.as_str() == machine)
                .map(|w| w.start_ms)
                .min()
                .unwrap();
            // Four windows (10 ms apart) dropped between the parts.
            assert_eq!(first_held - last_train, 5 * 10);
        }
    }

    #[test]
    fn short_machines_keep_everything_for_training() {
        let all = windows("a", 10);
        let split = split_by_machine(&all, 0.2, 8);
        assert_eq!(split.train.len(), 10);
        assert!(split.heldout.is_empty());
        assert_eq!(split.skipped, 0);
    }
}
