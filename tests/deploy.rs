//! The deployment files agree with the binary: the systemd unit starts a command the binary has
//! and gives the SIGTERM drain more time than the daemon takes by default. (The example config
//! is loaded by the config module's own tests.)

use vaewatch::config::Config;

use crate::util::repo_root;

/// `key=value` lines of a systemd unit, comments left out.
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_unit_runs_the_daemon_and_outwaits_its_drain() {
    let text =
        std::fs::read_to_string(repo_root().join("deploy/systemd/vaewatch.service")).unwrap();
    let exec = unit_values(&text, "ExecStart");
    assert_eq!(exec.len(), 1, "{exec:?}");
    let args: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(args[1..3], ["run", "--config"], "{args:?}");
    // The binary accepts that command line (its help lists the option).
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_vaewatch"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--config"));

    let stop: u64 = unit_values(&text, "TimeoutStopSec")[0].parse().unwrap();
    let drain = Config::default().shutdown_timeout.as_secs();
    assert!(
        stop > drain,
        "systemd would SIGKILL after {stop} s, before the {drain} s drain ends"
    );
    assert_eq!(unit_values(&text, "KillSignal"), ["SIGTERM"]);
}
