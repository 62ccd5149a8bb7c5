//! The command line's side of the configuration: the flags that
//! `voltd run`, `voltd enroll` and `voltd config show` take. They are built
//! from the key table (`voltd_actors::config::keys::KEYS`: name, value
//! name, help text, value check), so a key that gets a flag needs no code
//! here. Everything else — the model, layering file → environment →
//! flags, `config show` — is `voltd_actors::config`.

use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use voltd_actors::config::Flags;
use voltd_actors::config::keys::{KEYS, Kind};

/// The configuration flags given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides(pub Flags);

impl Args for Overrides {
    fn augment_args(cmd: Command) -> Command {
        KEYS.iter()
            .filter_map(|k| k.flag.map(|f| (k, f)))
            .fold(cmd, |cmd, (k, f)| {
                let arg = Arg::new(f.name)
                    .long(f.name)
                    .value_name(f.value_name)
                    .help(k.meaning);
                let arg = match k.kind {
                    Kind::WholeNumber => arg.value_parser(whole_number),
                    Kind::Choice(words) => {
                        arg.value_parser(PossibleValuesParser::new(words.iter().copied()))
                    }
                    Kind::Text | Kind::List | Kind::ServiceSelection => arg,
                };
                cmd.arg(arg)
            })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for Overrides {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Flags::new();
        for f in KEYS.iter().filter_map(|k| k.flag) {
            if let Some(v) = m.get_one::<String>(f.name) {
                flags.set(f.name, v.clone());
            }
        }
        Ok(Overrides(flags))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// A flag that takes a whole number is checked by clap, like a typed one.
fn whole_number(s: &str) -> Result<String, String> {
    s.trim()
        .parse::<u64>()
        .map(|_| s.to_owned())
        .map_err(|e| format!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        overrides: Overrides,
    }

    #[test]
    fn every_flag_of_the_key_table_parses() {
        let p = Probe::try_parse_from([
            "voltd",
            "--cloud-url",
            "http://x",
            "--cluster-id",
            "c",
            "--state-dir",
            "/s",
            "--heartbeat-interval-ms",
            "100",
            "--log-level",
            "debug",
            "--log-format",
            "json",
            "--services",
            "redis,mongo",
        ])
        .unwrap();
        let expected = Flags::new()
            .with("cloud-url", "http://x")
            .with("cluster-id", "c")
            .with("state-dir", "/s")
            .with("heartbeat-interval-ms", "100")
            .with("log-level", "debug")
            .with("log-format", "json")
            .with("services", "redis,mongo");
        assert_eq!(p.overrides.0, expected);
        let n = KEYS.iter().filter(|k| k.flag.is_some()).count();
        assert_eq!(n, 7, "a new flag: add it to this test");
    }

    #[test]
    fn typed_flags_are_checked_by_clap() {
        assert!(Probe::try_parse_from(["voltd", "--heartbeat-interval-ms", "soon"]).is_err());
        assert!(Probe::try_parse_from(["voltd", "--log-format", "xml"]).is_err());
        assert!(Probe::try_parse_from(["voltd", "--bogus", "1"]).is_err());
        assert_eq!(
            Probe::try_parse_from(["voltd"]).unwrap().overrides,
            Overrides::default()
        );
    }
}
