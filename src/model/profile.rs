//! Where scoring's time goes, for `vaewatch model bench --profile`: wall time of the stages of
//! every batch (normalising the windows, copying them to a GPU, the network's passes, copying the
//! results back, the errors and scores on the CPU), summed over the process while switched on.
//! Off by default, when it costs one relaxed load per stage; on, the GPU is waited for after each
//! stage, which costs the overlap of copies and computation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

static ON: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// A stage of scoring a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    /// Normalising the raw windows into the network's input.
    Prepare = 0,
    /// The forward passes (on a GPU, with the errors computed there).
    Network = 1,
    /// Per-channel errors, scores and the latent rows of each window, on the CPU.
    Errors = 2,
    /// Copying a batch to the GPU.
    ToDevice = 3,
    /// Copying the results back from the GPU.
    FromDevice = 4,
}

/// Seconds spent in each stage since [`start`].
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Profile {
    pub prepare_s: f64,
    pub to_device_s: f64,
    pub network_s: f64,
    pub from_device_s: f64,
    pub errors_s: f64,
}

/// Starts counting from zero.
pub fn start() {
    for n in &NANOS {
        n.store(0, Ordering::Relaxed);
    }
    ON.store(true, Ordering::Relaxed);
}

/// Stops counting and gives what was counted.
pub fn stop() -> Profile {
    ON.store(false, Ordering::Relaxed);
    let seconds = |stage: Stage| {
        Duration::from_nanos(NANOS[stage as usize].load(Ordering::Relaxed)).as_secs_f64()
    };
    Profile {
        prepare_s: seconds(Stage::Prepare),
        to_device_s: seconds(Stage::ToDevice),
        network_s: seconds(Stage::Network),
        from_device_s: seconds(Stage::FromDevice),
        errors_s: seconds(Stage::Errors),
    }
}

/// The time since the last lap, when counting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Option<Instant>);

impl Clock {
    pub(crate) fn start() -> Clock {
        Clock(ON.load(Ordering::Relaxed).then(Instant::now))
    }

    /// Whether the profile is counting.
    pub(crate) fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Adds the time since the last lap to `stage`.
    pub(crate) fn lap(self, stage: Stage) -> Clock {
        match self.0 {
            Some(since) => {
                let now = Instant::now();
                let nanos = u64::try_from((now - since).as_nanos()).unwrap_or(u64::MAX);
                NANOS[stage as usize].fetch_add(nanos, Ordering::Relaxed);
                Clock(Some(now))
            }
            None => self,
        }
    }
}
