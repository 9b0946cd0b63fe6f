//! The deployment files agree with the binary: the systemd unit starts a command the binary has,
//! gives the SIGTERM drain more time than the daemon takes by default, and does not restart a
//! daemon whose exit status says a restart cannot help (which `vaewatch run` sets as it says);
//! the container images build with the repository's own build commands and run the daemon; the
//! compose and Kubernetes configs load, and every environment variable they set is one the
//! daemon reads. (The example config is loaded by the config module's own tests; the files'
//! syntax is checked by deploy/lint.sh and deploy/prometheus/check.sh.)

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
    // `systemctl reload` sends the SIGHUP that `vaewatch run` reloads its models on.
    assert_eq!(
        unit_values(&text, "ExecReload"),
        ["/bin/kill -HUP $MAINPID"]
    );
}

#[test]
fn systemd_does_not_restart_what_needs_a_person() {
    let text =
        std::fs::read_to_string(repo_root().join("deploy/systemd/vaewatch.service")).unwrap();
    assert_eq!(unit_values(&text, "Restart"), ["on-failure"]);
    assert_eq!(
        unit_values(&text, "RestartPreventExitStatus"),
        [vaewatch::commands::run::EXIT_NEEDS_A_PERSON.to_string()]
    );
}

/// Runs `vaewatch run` on a config with the log filter `log`; returns its exit status and
/// stderr.
fn run_with(config: &str, log: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vaewatch.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vaewatch"))
        .args(["run", "--config"])
        .arg(&path)
        .args(["--log", log])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_exits_with_a_status_that_says_whether_a_restart_can_help() {
    let model = crate::util::bundled_model_dir();
    // A config that needs a person: a key renamed to a duration.
    let (code, stderr) = run_with(
        &format!(
            "shutdown_timeout_secs = 30\n[kafka]\nbrokers = \"127.0.0.1:9\"\n\
         [models]\ndefault = \"{}\"\n",
            model.display()
        ),
        "warn",
    );
    assert_eq!(
        code,
        Some(i32::from(vaewatch::commands::run::EXIT_NEEDS_A_PERSON)),
        "{stderr}"
    );
    assert!(stderr.contains("shutdown_timeout"), "{stderr}");
    // A disk that refuses the archive: a restart may succeed once it is fixed or has room.
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let (code, stderr) = run_with(
        &format!(
            "[kafka]\nbrokers = \"127.0.0.1:9\"\n[models]\ndefault = \"{}\"\n\
         [archive]\ndir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            model.display(),
            blocker.path().join("archive").display()
        ),
        "warn",
    );
    assert_eq!(
        code,
        Some(i32::from(vaewatch::commands::run::EXIT_RETRYABLE)),
        "{stderr}"
    );
    assert!(stderr.contains("a restart resumes"), "{stderr}");
}

#[test]
fn json_logs_are_one_object_per_line_including_the_final_error() {
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vaewatch.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbrokers = \"127.0.0.1:9\"\n[models]\ndefault = \"{}\"\n\
             [archive]\ndir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            crate::util::bundled_model_dir().display(),
            blocker.path().join("archive").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vaewatch"))
        .args(["run", "--log", "info", "--log-format", "json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(events.len() >= 2, "{stderr}");
    assert!(
        events
            .iter()
            .all(|e| e["level"].is_string() && e["fields"].is_object())
    );
    let last = events.last().unwrap();
    assert_eq!(last["level"], "ERROR");
    assert!(
        last["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("archive")),
        "{last}"
    );
    assert_eq!(
        last["fields"]["hint"],
        "a restart resumes from the last commit"
    );
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    // The daemon logs at info before it fails on the archive: enough lines to look at.
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let (_, stderr) = run_with(
        &format!(
            "[kafka]\nbrokers = \"127.0.0.1:9\"\n[models]\ndefault = \"{}\"\n\
             [archive]\ndir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            crate::util::bundled_model_dir().display(),
            blocker.path().join("archive").display()
        ),
        "info",
    );
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a piped log: {stderr}"
    );
}

/// The metric names `vaewatch run` serves, from its own rendering: the names of its samples
/// (a counter's with `_total`), histogram series taken back to their family as
/// [`metric_names_in`] does.
fn served_metric_families() -> std::collections::BTreeSet<String> {
    let text = vaewatch::metrics::Metrics::new().render();
    let samples: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|name| format!("{name}\n"))
        .collect();
    metric_names_in(&samples)
}

/// Every `vaewatch_*` name in `text`, histogram series (`_bucket`, `_sum`, `_count`) taken back
/// to their family.
fn metric_names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("vaewatch_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(family.to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_alert_rules_and_the_dashboard_name_only_metrics_the_daemon_serves() {
    let served = served_metric_families();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/vaewatch-rules.yml")).unwrap();
    let dashboard =
        std::fs::read_to_string(root.join("deploy/grafana/vaewatch-dashboard.json")).unwrap();
    for (file, text, at_least) in [("rules", &rules, 8), ("dashboard", &dashboard, 12)] {
        let named = metric_names_in(text);
        assert!(
            named.len() >= at_least,
            "{file} names only {named:?}: the scan is broken"
        );
        let unknown: Vec<&String> = named.difference(&served).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics the daemon does not serve: {unknown:?}"
        );
    }
    // The dashboard is Grafana JSON with a query in every panel.
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.iter().all(|p| {
        p["targets"]
            .as_array()
            .is_some_and(|t| !t.is_empty() && t.iter().all(|t| t["expr"].is_string()))
    }));
    // The scan itself: a name that is not served is caught.
    let planted = metric_names_in("rate(vaewatch_no_such_metric_total[5m])");
    assert!(!planted.is_subset(&served));
}

/// `ENV NAME=value` pairs of a Dockerfile (one `ENV` instruction may continue over lines).
fn dockerfile_env(text: &str) -> Vec<(String, String)> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ENV "))
        .flat_map(|rest| rest.split_whitespace())
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Fails unless each `VAEWATCH_*` name changes the config it is applied to: the daemon would
/// silently ignore a misspelt one.
fn assert_env_names_are_known(pairs: &[(String, String)], what: &str) {
    for (name, value) in pairs.iter().filter(|(n, _)| n.starts_with("VAEWATCH_")) {
        if name == "VAEWATCH_LOG_FORMAT" || name == "VAEWATCH_LOG" {
            assert!(
                ["json", "text", "info"].contains(&value.as_str()),
                "{what}: {name}={value}"
            );
            continue;
        }
        let before = Config::default();
        let mut after = Config::default();
        after
            .apply_env([(name.clone(), value.clone())])
            .unwrap_or_else(|e| panic!("{what}: {name}={value}: {e}"));
        assert_ne!(
            format!("{before:?}"),
            format!("{after:?}"),
            "{what}: {name} is not a setting vaewatch reads"
        );
    }
}

#[test]
fn the_container_images_build_with_the_repositorys_own_commands_and_run_the_daemon() {
    let cpu = std::fs::read_to_string(repo_root().join("deploy/docker/Dockerfile")).unwrap();
    let cuda = std::fs::read_to_string(repo_root().join("deploy/docker/Dockerfile.cuda")).unwrap();
    assert!(
        cpu.contains("RUN cargo build --release --locked"),
        "CPU build step"
    );
    assert!(
        cuda.contains("scripts/build_cuda.sh --locked"),
        "CUDA build step"
    );
    assert!(repo_root().join("scripts/build_cuda.sh").exists());
    for (name, text) in [("Dockerfile", &cpu), ("Dockerfile.cuda", &cuda)] {
        assert!(
            text.contains(r#"CMD ["run", "--config", "/etc/vaewatch/vaewatch.toml"]"#),
            "{name}: the daemon is the default command"
        );
        assert!(text.contains("USER 10001:10001"), "{name}: runs as a user");
        assert!(text.contains("http://127.0.0.1:9464/healthz"), "{name}");
        assert!(text.contains("EXPOSE 9464"), "{name}");
        let env = dockerfile_env(text);
        assert!(
            env.contains(&("VAEWATCH_METRICS_LISTEN".into(), "0.0.0.0:9464".into())),
            "{name}: metrics reachable from outside the container: {env:?}"
        );
        assert_env_names_are_known(&env, name);
    }
}

/// The config files of the compose stack and of the Kubernetes ConfigMap load and validate, the
/// model path they name is where the images put the bundled model, and the environment the
/// manifests set is read by the daemon.
#[test]
fn the_compose_and_kubernetes_configs_load_and_their_environment_is_read() {
    let compose_toml = repo_root().join("deploy/docker/vaewatch.toml");
    let text = std::fs::read_to_string(&compose_toml).unwrap();
    let compose = Config::from_toml_str(&text, &compose_toml).unwrap();
    compose.validate().unwrap();

    let configmap = std::fs::read_to_string(repo_root().join("deploy/k8s/configmap.yaml")).unwrap();
    let embedded: String = configmap
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("vaewatch.toml: |"))
        .skip(1)
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    assert!(embedded.contains("[kafka]"), "{embedded}");
    let k8s = Config::from_toml_str(&embedded, std::path::Path::new("configmap.yaml")).unwrap();
    k8s.validate().unwrap();

    let dockerfile = std::fs::read_to_string(repo_root().join("deploy/docker/Dockerfile")).unwrap();
    assert!(dockerfile.contains("COPY models /usr/share/vaewatch/models"));
    for config in [&compose, &k8s] {
        let model = config.models.default.as_ref().unwrap();
        let inside_repo = model.strip_prefix("/usr/share/vaewatch").unwrap();
        assert!(
            repo_root().join(inside_repo).join("manifest.json").exists(),
            "{} is not a model the images carry",
            model.display()
        );
    }

    // Every VAEWATCH_* variable the Deployments set: names the daemon reads. A pod name is a
    // valid archive file prefix.
    for manifest in [
        "deploy/k8s/deployment.yaml",
        "deploy/k8s/cuda/deployment.yaml",
    ] {
        let text = std::fs::read_to_string(repo_root().join(manifest)).unwrap();
        let names: Vec<String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- name: VAEWATCH_"))
            .map(|n| format!("VAEWATCH_{n}"))
            .collect();
        assert!(names.len() >= 4, "{manifest}: {names:?}");
        let pairs: Vec<(String, String)> = names
            .into_iter()
            .map(|n| {
                let value = match n.as_str() {
                    "VAEWATCH_ARCHIVE_FILE_PREFIX" => "vaewatch-7d9f8c6b5-x2k4q",
                    "VAEWATCH_METRICS_LISTEN" => "0.0.0.0:9464",
                    "VAEWATCH_LOG_FORMAT" => "json",
                    _ => "a-secret",
                };
                (n, value.to_owned())
            })
            .collect();
        assert_env_names_are_known(&pairs, manifest);
        let mut config = k8s.clone();
        config.apply_env(pairs).unwrap();
        config.validate().unwrap();
    }
}

/// The compose stack's plant is `vaewatch simulate` with options the binary has.
#[test]
fn the_compose_plant_uses_options_simulate_has() {
    let compose = std::fs::read_to_string(repo_root().join("deploy/docker/compose.yaml")).unwrap();
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_vaewatch"))
        .args(["simulate", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let options: Vec<&str> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- --"))
        .filter_map(|o| o.split('=').next())
        .collect();
    assert!(options.len() >= 5, "{options:?}");
    for option in options {
        assert!(
            help.contains(&format!("--{option} ")),
            "simulate has no --{option}"
        );
    }
}
