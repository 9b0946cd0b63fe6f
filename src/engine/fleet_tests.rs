//! Tests of the fleet: taking machines over from saved states, maintenance requests.

use super::*;

fn state(last_window_end_ms: Option<i64>, fleet: &Fleet) -> MachineState {
    MachineState {
        last_window_end_ms,
        alerts: AlertPolicy::new(fleet.alerts, fleet.channel_names.clone()).state(),
        quality: Default::default(),
        baseline: Default::default(),
        maintenance: Default::default(),
    }
}

#[test]
fn a_machine_is_taken_over_only_when_not_read_here_and_the_state_reaches_further() {
    let mut fleet = Fleet::new(
        vec!["a".into(), "b".into()],
        WindowConfig {
            sample_period_ms: 1_000,
            window: 8,
            stride: 4,
            allowed_lateness_ms: 0,
            max_gap_samples: 2,
            min_present_fraction: 0.5,
        },
        AlertPolicyConfig::default(),
    );
    let pump = EquipmentId::try_from("pump-1".to_owned()).unwrap();
    // Unknown here: taken.
    assert!(fleet.adopt(&pump, state(Some(1_000), &fleet)));
    let held = |fleet: &Fleet| fleet.state().machines["pump-1"].last_window_end_ms;
    assert_eq!(held(&fleet), Some(1_000));
    // Not further than what is held: kept.
    assert!(!fleet.adopt(&pump, state(Some(1_000), &fleet)));
    assert!(!fleet.adopt(&pump, state(None, &fleet)));
    // Further: taken.
    assert!(fleet.adopt(&pump, state(Some(5_000), &fleet)));
    assert_eq!(held(&fleet), Some(5_000));
    assert!(
        fleet.live_states().is_empty(),
        "restored, not read here yet"
    );
    // Once its samples are read here, a state written elsewhere never replaces it.
    let sample = Sample {
        ts_ms: 6_000,
        values: vec![Some(1.0), Some(2.0)],
        source: Some(SourcePosition {
            partition: 2,
            offset: 7,
        }),
    };
    fleet.push(&pump, &sample);
    assert!(!fleet.adopt(&pump, state(Some(9_000), &fleet)));
    let live = fleet.live_states();
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].1, live[0].2.last_window_end_ms), (2, Some(5_000)));
}

#[test]
fn maintenance_requests_apply_in_order_once_and_survive_a_restart() {
    let config = WindowConfig {
        sample_period_ms: 1_000,
        window: 8,
        stride: 4,
        allowed_lateness_ms: 0,
        max_gap_samples: 2,
        min_present_fraction: 0.5,
    };
    let new_fleet = || Fleet::new(vec!["a".into()], config.clone(), Default::default());
    let pump = EquipmentId::try_from("pump-1".to_owned()).unwrap();
    let request = |action, at_ms| ControlRequest {
        action,
        equipment_id: pump.clone(),
        at_ms,
        by: None,
        reason: None,
    };
    let requests = [
        request(ControlAction::StartMaintenance, 10_000),
        request(ControlAction::EndMaintenance, 30_000),
    ];
    let window = |end_ms: i64| Window {
        equipment_id: pump.clone(),
        start_ms: end_ms - 7_000,
        end_ms,
        channels: 1,
        len: 8,
        values: vec![1.0; 8],
        mask: vec![true; 8],
        sources: Vec::new(),
    };
    let mut fleet = new_fleet();
    // Known here, with windows handled up to 1 s.
    assert!(fleet.adopt(&pump, state(Some(1_000), &fleet)));
    for r in &requests {
        fleet.request(r.clone());
    }
    assert!(!fleet.in_requested_maintenance(&window(5_000)));
    assert!(fleet.in_requested_maintenance(&window(10_000)));
    assert!(fleet.in_requested_maintenance(&window(20_000)));
    let saved = fleet.state().machines["pump-1"].maintenance;
    assert_eq!(
        saved,
        MaintenanceState {
            since_ms: Some(10_000),
            last_request_ms: Some(10_000)
        }
    );

    // A restart: the state comes back, the control topic is read again from its start.
    let mut restarted = new_fleet();
    let mut state = fleet.state();
    state.machines.get_mut("pump-1").unwrap().last_window_end_ms = Some(20_000);
    restarted.restore(state);
    for r in &requests {
        restarted.request(r.clone());
    }
    assert!(
        restarted.in_requested_maintenance(&window(24_000)),
        "still in maintenance"
    );
    assert!(
        !restarted.in_requested_maintenance(&window(30_000)),
        "ended"
    );
    assert!(!restarted.in_requested_maintenance(&window(34_000)));
    // The start, read again, is not applied twice.
    restarted.request(requests[0].clone());
    assert!(!restarted.in_requested_maintenance(&window(38_000)));
}
