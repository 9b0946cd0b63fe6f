//! One simulated machine: a centrifugal pump on a variable-speed drive. An operating-mode process
//! (regime switches with ramps, a slow demand cycle, a little wander) sets the speed; flow,
//! pressure, power, current and vibration follow the pump affinity laws; temperatures follow load
//! and the daily ambient cycle with thermal lag. Sensors add noise and drop out; faults act on the
//! physics or on the sensors.

use super::faults::{FaultEvent, FaultKind};
use super::rng::Rng;

/// Channel names, in the order of every record's values.
pub const CHANNELS: [&str; 8] = [
    "current",
    "pressure",
    "flow",
    "vibration_rms",
    "bearing_temp",
    "motor_temp",
    "speed",
    "power",
];

const CURRENT: usize = 0;
const PRESSURE: usize = 1;
const FLOW: usize = 2;
const VIBRATION: usize = 3;
const BEARING_TEMP: usize = 4;
const MOTOR_TEMP: usize = 5;
const SPEED: usize = 6;
const POWER: usize = 7;

/// Speed set points of the operating modes, as fractions of rated speed.
const MODES: [f64; 4] = [0.4, 0.6, 0.8, 0.95];
/// Measurement noise standard deviation per channel, in channel units.
const NOISE: [f64; 8] = [0.4, 0.03, 0.8, 0.05, 0.15, 0.2, 3.0, 0.3];
const DAY_MS: f64 = 86_400_000.0;

/// What a machine's sensors report for one sample.
pub(super) struct Reading {
    pub values: Vec<Option<f32>>,
    pub fault: Option<FaultKind>,
}

/// Fixed characteristics of one machine, drawn from the seed.
struct Rating {
    speed_rpm: f64,
    flow_m3h: f64,
    static_head_bar: f64,
    pressure_gain_bar: f64,
    power_kw: f64,
    cycle_phase: f64,
    cycle_period_ms: f64,
}

/// Physical state and sensor state of one machine.
pub(super) struct Machine {
    rating: Rating,
    physics: Rng,
    sensors: Rng,
    faults: Vec<FaultEvent>,
    mode: usize,
    mode_until_ms: i64,
    speed_frac: f64,
    wander: f64,
    motor_temp: f64,
    bearing_temp: f64,
    /// Forced mode switches (during stuck-sensor faults), ascending, ms.
    forced_switches: Vec<i64>,
    /// Last reported value per channel, for stuck sensors.
    last: [f64; 8],
    stuck_value: Option<(usize, f64)>,
    dropout_rate: f64,
}

impl Machine {
    /// A machine with its own random streams; `faults` are this machine's scheduled faults.
    pub(super) fn new(
        seed: u64,
        index: usize,
        start_ms: i64,
        faults: Vec<FaultEvent>,
        dropout_rate: f64,
    ) -> Machine {
        let mut params = Rng::derive(seed, 100 + index as u64);
        let rating = Rating {
            speed_rpm: 1480.0 * params.range(0.97, 1.03),
            flow_m3h: 120.0 * params.range(0.85, 1.15),
            static_head_bar: params.range(0.8, 1.2),
            pressure_gain_bar: 5.0 * params.range(0.9, 1.1),
            power_kw: 45.0 * params.range(0.9, 1.1),
            cycle_phase: params.range(0.0, std::f64::consts::TAU),
            cycle_period_ms: params.range(1.5, 2.5) * 3_600_000.0,
        };
        let mode = params.below(MODES.len() as u64) as usize;
        let forced_switches = faults
            .iter()
            .filter(|f| f.kind == FaultKind::StuckSensor)
            .map(|f| f.start_ms + (f.end_ms - f.start_ms) / 4)
            .collect();
        let mut machine = Machine {
            rating,
            physics: Rng::derive(seed, 10_000 + index as u64),
            sensors: Rng::derive(seed, 20_000 + index as u64),
            faults,
            mode,
            mode_until_ms: start_ms,
            speed_frac: MODES[mode],
            wander: 0.0,
            motor_temp: 0.0,
            bearing_temp: 0.0,
            forced_switches,
            last: [0.0; 8],
            stuck_value: None,
            dropout_rate,
        };
        machine.mode_until_ms = start_ms + machine.dwell_ms();
        // Start thermally settled at the initial load.
        let ambient = ambient_temp(start_ms);
        machine.motor_temp = machine.motor_target(ambient, machine.speed_frac);
        machine.bearing_temp = machine.bearing_target(ambient, machine.speed_frac, 0.0);
        machine
    }

    fn dwell_ms(&mut self) -> i64 {
        (self.physics.exponential(15.0 * 60_000.0) + 3.0 * 60_000.0) as i64
    }

    fn motor_target(&self, ambient: f64, s: f64) -> f64 {
        let load = 0.15 + 0.85 * s.powi(3);
        ambient + 12.0 + 45.0 * load * load
    }

    fn bearing_target(&self, ambient: f64, s: f64, extra: f64) -> f64 {
        ambient + 8.0 + 22.0 * s + 0.15 * (self.motor_temp - ambient) + extra
    }

    /// Advances the machine by `dt_ms` to time `t_ms` and reads its sensors.
    pub(super) fn step(&mut self, t_ms: i64, dt_ms: i64) -> Reading {
        let dt_s = dt_ms as f64 / 1000.0;
        let fault = self
            .faults
            .iter()
            .find_map(|f| f.progress(t_ms).map(|p| (f.clone(), p)));

        // Operating mode: dwell, then switch; ramps limit how fast speed follows.
        let forced = self.forced_switches.first().is_some_and(|&s| t_ms >= s);
        if forced {
            self.forced_switches.remove(0);
            let current = MODES[self.mode];
            self.mode = (0..MODES.len())
                .max_by(|&a, &b| {
                    (MODES[a] - current)
                        .abs()
                        .total_cmp(&(MODES[b] - current).abs())
                })
                .unwrap_or(0);
            self.mode_until_ms = t_ms + self.dwell_ms();
        } else if t_ms >= self.mode_until_ms {
            let step = 1 + self.physics.below(MODES.len() as u64 - 1) as usize;
            self.mode = (self.mode + step) % MODES.len();
            self.mode_until_ms = t_ms + self.dwell_ms();
        }
        let cycle = 0.04
            * (std::f64::consts::TAU * t_ms as f64 / self.rating.cycle_period_ms
                + self.rating.cycle_phase)
                .sin();
        let alpha = (-dt_s / 60.0).exp();
        self.wander =
            alpha * self.wander + (1.0 - alpha * alpha).sqrt() * 0.01 * self.physics.normal();
        let target = (MODES[self.mode] + cycle + self.wander).clamp(0.2, 1.05);
        let max_change = 0.005 * dt_s;
        self.speed_frac += (target - self.speed_frac).clamp(-max_change, max_change);
        let s = self.speed_frac;

        // Hydraulics and drive, with fault effects on the physics.
        let (mut flow_factor, mut pressure_factor, mut bearing_extra, mut vib_factor) =
            (1.0, 1.0, 0.0, 1.0);
        let mut vib_noise = NOISE[VIBRATION];
        if let Some((f, p)) = &fault {
            match f.kind {
                FaultKind::Degradation => {
                    bearing_extra = 8.0 * f.magnitude * p;
                    vib_factor = 1.0 + 0.15 * f.magnitude * p;
                }
                FaultKind::VibrationRise => {
                    vib_factor = 1.0 + 0.8 * f.magnitude * p;
                    vib_noise *= 1.0 + 3.0 * f.magnitude * p;
                }
                FaultKind::BrokenRelation => {
                    let onset = (p * 5.0).min(1.0);
                    flow_factor = 1.0 - 0.2 * f.magnitude * onset;
                    pressure_factor = 1.0 + 0.06 * f.magnitude * onset;
                }
                _ => {}
            }
        }
        let r = &self.rating;
        let flow = r.flow_m3h * s * flow_factor;
        let pressure = (r.static_head_bar + r.pressure_gain_bar * s * s) * pressure_factor;
        let power = 2.0 + r.power_kw * s.powi(3) * (0.6 + 0.4 * flow_factor * pressure_factor);
        let current = 8.0 + 1.64 * power;
        let vibration = (0.8 + 2.2 * s * s) * vib_factor;
        let ambient = ambient_temp(t_ms);
        let motor_target = self.motor_target(ambient, s);
        self.motor_temp += (motor_target - self.motor_temp) * (1.0 - (-dt_s / 900.0).exp());
        let bearing_target = self.bearing_target(ambient, s, bearing_extra);
        self.bearing_temp += (bearing_target - self.bearing_temp) * (1.0 - (-dt_s / 600.0).exp());

        let truth = [
            current,
            pressure,
            flow,
            vibration,
            self.bearing_temp,
            self.motor_temp,
            r.speed_rpm * s,
            power,
        ];
        let mut measured = [0.0; 8];
        for c in 0..8 {
            let noise = if c == VIBRATION { vib_noise } else { NOISE[c] };
            measured[c] = truth[c] + noise * self.sensors.normal();
        }
        measured[VIBRATION] = measured[VIBRATION].max(0.05);

        // Sensor faults act on what is reported.
        match &fault {
            Some((f, _)) if f.kind == FaultKind::StepChange => {
                let c = f.channel.unwrap_or(PRESSURE);
                // Stronger-than-nominal steps go up, weaker ones down: both directions occur.
                let sign = if f.magnitude >= 1.0 { 1.0 } else { -1.0 };
                measured[c] += sign * 0.08 * f.magnitude * nominal_level(&self.rating, c);
            }
            Some((f, _)) if f.kind == FaultKind::StuckSensor => {
                let c = f.channel.unwrap_or(FLOW);
                let (_, v) = *self.stuck_value.get_or_insert((c, self.last[c]));
                measured[c] = v;
            }
            Some((f, _)) if f.kind == FaultKind::Spikes && self.sensors.chance(0.03) => {
                let c = [CURRENT, PRESSURE, FLOW, VIBRATION][self.sensors.below(4) as usize];
                let sign = if self.sensors.chance(0.5) { 1.0 } else { -1.0 };
                let size = self.sensors.range(0.25, 0.5) * f.magnitude;
                measured[c] *= 1.0 + sign * size;
            }
            _ => {}
        }
        // No sensor here reads below zero.
        for v in &mut measured {
            *v = v.max(0.0);
        }
        if !matches!(&fault, Some((f, _)) if f.kind == FaultKind::StuckSensor) {
            self.stuck_value = None;
        }
        self.last = measured;

        let values = measured
            .iter()
            .map(|&v| (!self.sensors.chance(self.dropout_rate)).then_some(v as f32))
            .collect();
        Reading {
            values,
            fault: fault.map(|(f, _)| f.kind),
        }
    }
}

/// A channel's level at rated speed, the yardstick for fault sizes.
fn nominal_level(r: &Rating, c: usize) -> f64 {
    match c {
        CURRENT => 8.0 + 1.64 * (2.0 + r.power_kw),
        PRESSURE => r.static_head_bar + r.pressure_gain_bar,
        FLOW => r.flow_m3h,
        VIBRATION => 3.0,
        BEARING_TEMP | MOTOR_TEMP => 60.0,
        SPEED => r.speed_rpm,
        POWER => 2.0 + r.power_kw,
        _ => 1.0,
    }
}

/// Ambient temperature in °C: 22 ± 4 over the day, warmest mid-afternoon UTC.
fn ambient_temp(t_ms: i64) -> f64 {
    let phase = (t_ms as f64 % DAY_MS) / DAY_MS;
    22.0 + 4.0 * (std::f64::consts::TAU * (phase - 0.375)).sin()
}
