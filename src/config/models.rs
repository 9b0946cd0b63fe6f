//! `[models]`: which model directory scores which machine. A default model plus overrides by exact
//! equipment id or by glob pattern, so a plant can run one fleet model or one per critical machine.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// `[models]` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Model directory for machines that no override names. Unset: such machines are not scored
    /// and their messages are dead-lettered (reason `no_model`).
    pub default: Option<PathBuf>,
    /// Machine-specific models, as `[[models.overrides]]` entries. An exact id wins over any
    /// pattern; among patterns, the first listed that matches wins.
    pub overrides: Vec<ModelOverride>,
    /// A candidate model run beside the live ones on every machine they score: its windows are
    /// archived under its own `model_id` and its would-be alerts go to
    /// `kafka.shadow_alert_topic`, never to the alert topic.
    pub shadow: Option<PathBuf>,
    /// How often `vaewatch run` looks at its config file and every model directory it names;
    /// a change reloads the models as SIGHUP does (a duration: `10s`). Unset: only SIGHUP
    /// reloads.
    #[serde(deserialize_with = "crate::duration::deserialize_option")]
    pub watch: Option<std::time::Duration>,
}

/// One `[[models.overrides]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOverride {
    /// An equipment id, or a glob pattern where `*` matches any run of characters and `?` one
    /// character (`pump-*`, `compressor-?1`).
    pub equipment: String,
    /// The model directory for the matching machines.
    pub dir: PathBuf,
}

impl ModelOverride {
    fn is_pattern(&self) -> bool {
        self.equipment.contains(['*', '?'])
    }
}

impl ModelsConfig {
    /// The model directory that scores `equipment_id`, or `None` when no model covers it.
    pub fn model_dir_for(&self, equipment_id: &str) -> Option<&Path> {
        let exact = self
            .overrides
            .iter()
            .find(|o| !o.is_pattern() && o.equipment == equipment_id);
        let pattern = || {
            self.overrides
                .iter()
                .find(|o| o.is_pattern() && glob_match(&o.equipment, equipment_id))
        };
        exact
            .or_else(pattern)
            .map(|o| o.dir.as_path())
            .or(self.default.as_deref())
    }

    /// Every distinct model directory named, default first: the models the daemon loads at start.
    pub fn all_dirs(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = Vec::new();
        for dir in self
            .default
            .iter()
            .chain(self.overrides.iter().map(|o| &o.dir))
        {
            if !dirs.contains(&dir.as_path()) {
                dirs.push(dir);
            }
        }
        dirs
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.default.is_none() && self.overrides.is_empty() {
            return Err(ConfigError::invalid(
                "models.default",
                "no model is configured: set models.default or add [[models.overrides]]",
            ));
        }
        if let Some(dir) = &self.default
            && dir.as_os_str().is_empty()
        {
            return Err(ConfigError::invalid("models.default", "it is empty"));
        }
        if let Some(shadow) = &self.shadow {
            if shadow.as_os_str().is_empty() {
                return Err(ConfigError::invalid("models.shadow", "it is empty"));
            }
            if self.all_dirs().contains(&shadow.as_path()) {
                return Err(ConfigError::invalid(
                    "models.shadow",
                    "it is a live model: a shadow is a different model run beside them",
                ));
            }
        }
        for (i, entry) in self.overrides.iter().enumerate() {
            if entry.equipment.is_empty() {
                return Err(ConfigError::invalid(
                    &format!("models.overrides[{i}].equipment"),
                    "it is empty",
                ));
            }
            if entry.dir.as_os_str().is_empty() {
                return Err(ConfigError::invalid(
                    &format!("models.overrides[{i}].dir"),
                    "it is empty",
                ));
            }
            if let Some(j) = self.overrides[..i]
                .iter()
                .position(|earlier| earlier.equipment == entry.equipment)
            {
                return Err(ConfigError::invalid(
                    &format!("models.overrides[{i}].equipment"),
                    format!("{:?} is already listed at index {j}", entry.equipment),
                ));
            }
        }
        Ok(())
    }
}

/// True when `text` matches `pattern`, where `*` matches any run of characters (also none) and
/// `?` exactly one; every other character matches itself. Linear in practice (greedy `*` with
/// one backtrack point).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Position after the last `*` seen and the text position it currently absorbs up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((after_star, absorbed)) => {
                    p = after_star;
                    t = absorbed + 1;
                    star = Some((after_star, absorbed + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}
