//! Presets (`BACKUP_PRESET`): one word that gives the retention, encryption, verify and drill
//! defaults of an environment, after seed 003's strategy table. A preset sits between the config
//! file and the built-in defaults, key by key: any explicit setting wins over it.

use super::{Settings, Source};
use crate::catalog::retention::Policy;
use crate::error::Error;
use std::fmt;
use std::time::Duration;

/// A day, the unit of the verify and drill cadences.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// An environment's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Keep the last 3 backups; nothing else.
    Dev,
    /// One backup a day for 7 days; verify daily.
    Staging,
    /// Everything for 30 days, then weekly and monthly backups; encryption required; verify daily
    /// and drill weekly.
    Production,
}

impl Preset {
    /// The preset named `text` (`dev`, `staging`, `production`; `development`, `stage` and `prod`
    /// too), any case.
    #[must_use]
    pub fn parse(text: &str) -> Option<Preset> {
        match text.trim().to_ascii_lowercase().as_str() {
            "dev" | "development" => Some(Preset::Dev),
            "staging" | "stage" => Some(Preset::Staging),
            "production" | "prod" => Some(Preset::Production),
            _ => None,
        }
    }

    /// The name users write.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Preset::Dev => "dev",
            Preset::Staging => "staging",
            Preset::Production => "production",
        }
    }

    /// The retention rules this preset sets (the others stay unset).
    #[must_use]
    pub fn retention(self) -> Policy {
        match self {
            Preset::Dev => Policy {
                keep_last: Some(3),
                ..Policy::default()
            },
            Preset::Staging => Policy {
                keep_daily: Some(7),
                ..Policy::default()
            },
            Preset::Production => Policy {
                max_age_days: Some(30),
                keep_weekly: Some(12),
                keep_monthly: Some(12),
                ..Policy::default()
            },
        }
    }

    /// Whether new backups must be encrypted (nothing turns this off but another preset).
    #[must_use]
    pub fn requires_encryption(self) -> bool {
        self == Preset::Production
    }

    /// How often the newest backup should be verified (for a scheduler to read).
    #[must_use]
    pub fn verify_every(self) -> Option<Duration> {
        match self {
            Preset::Dev => None,
            Preset::Staging | Preset::Production => Some(DAY),
        }
    }

    /// How often a restore drill should run (for a scheduler to read).
    #[must_use]
    pub fn drill_every(self) -> Option<Duration> {
        match self {
            Preset::Dev | Preset::Staging => None,
            Preset::Production => Some(7 * DAY),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A cadence (`1d`, `12h`, `2w`, `1d12h`, `90m`, `0` for off), as
/// [`parse_duration`](crate::runtime::units::parse_duration) reads it.
pub(super) fn parse_cadence(text: &str) -> Result<Duration, String> {
    crate::runtime::units::parse_duration(text)
}

impl Settings {
    /// Refuses a backup that is not encrypted when the preset requires encryption: `wanted` is
    /// whether the backup is to be encrypted, `keys` whether recipients or a passphrase file are
    /// configured, `off_by_flag` whether `--no-encrypt` turned it off.
    pub fn check_preset_encryption(
        &self,
        wanted: bool,
        keys: bool,
        off_by_flag: bool,
    ) -> anyhow::Result<()> {
        let Some(preset) = self
            .preset
            .as_ref()
            .filter(|p| p.value.requires_encryption())
        else {
            return Ok(());
        };
        let named = format!("the {} preset (from {})", preset.value, preset.source);
        let why = if off_by_flag {
            "--no-encrypt turns encryption off".to_string()
        } else if !wanted {
            format!(
                "{}=none (from {}) turns encryption off",
                super::Key::Encryption.env(),
                self.source(super::Key::Encryption)
            )
        } else if !keys {
            "no age recipients or passphrase file is configured".to_string()
        } else {
            return Ok(());
        };
        Err(Error::usage(format!("{named} requires encrypted backups, and {why}"))
            .hint("set BACKUP_AGE_RECIPIENTS to an age public key (or BACKUP_PASSPHRASE_FILE), and leave BACKUP_ENCRYPTION unset; a backup without encryption needs another BACKUP_PRESET")
            .into())
    }
}

/// `BACKUP_PRESET`, else the config file's `preset`; `None` when neither is set.
pub(super) fn resolve(
    env: &super::Env,
    file: Option<&str>,
) -> anyhow::Result<Option<super::Sourced<Preset>>> {
    let var = super::Key::Preset.env();
    let (text, source) = match (env.get(var), file) {
        (Some((v, src)), _) => (v, src),
        (None, Some(v)) => (v, Source::File),
        (None, None) => return Ok(None),
    };
    let preset = Preset::parse(text).ok_or_else(|| {
        Error::usage(format!("invalid preset {text:?} (from {source})")).hint(format!(
            "set {var} (or preset in the config file) to dev, staging or production"
        ))
    })?;
    Ok(Some(super::Sourced::new(preset, source)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [Preset::Dev, Preset::Staging, Preset::Production] {
            assert_eq!(Preset::parse(p.name()), Some(p));
            assert_eq!(Preset::parse(&p.name().to_uppercase()), Some(p));
        }
        assert_eq!(Preset::parse("prod"), Some(Preset::Production));
        assert_eq!(Preset::parse("qa"), None);
    }

    #[test]
    fn seed_003s_strategies() {
        assert_eq!(Preset::Dev.retention().keep_last, Some(3));
        assert_eq!(Preset::Staging.retention().keep_daily, Some(7));
        let p = Preset::Production.retention();
        assert_eq!(
            (p.max_age_days, p.keep_weekly, p.keep_monthly),
            (Some(30), Some(12), Some(12))
        );
        assert!(Preset::Production.requires_encryption());
        assert!(!Preset::Staging.requires_encryption());
        assert_eq!(Preset::Production.drill_every(), Some(7 * DAY));
    }

    #[test]
    fn cadences() {
        assert_eq!(parse_cadence("1d"), Ok(DAY));
        assert_eq!(parse_cadence("2w"), Ok(14 * DAY));
        assert_eq!(parse_cadence("12h"), Ok(DAY / 2));
        assert_eq!(parse_cadence("0"), Ok(Duration::ZERO));
        assert!(parse_cadence("often").is_err());
        assert!(parse_cadence("xd").is_err());
    }
}
