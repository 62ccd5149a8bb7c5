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
                    .help(f.help.unwrap_or(k.meaning));
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
        let mut args = vec!["voltd".to_owned()];
        let mut expected = Flags::new();
        for k in KEYS {
            let Some(f) = k.flag else { continue };
            let value = match k.kind {
                Kind::WholeNumber => "100".to_owned(),
                Kind::Choice(words) => words[words.len() - 1].to_owned(),
                Kind::Text | Kind::List | Kind::ServiceSelection => format!("{}-value", f.name),
            };
            args.push(format!("--{}", f.name));
            args.push(value.clone());
            expected.set(f.name, value);
        }
        assert!(args.len() > 10, "{args:?}");
        let p = Probe::try_parse_from(&args).unwrap();
        assert_eq!(p.overrides.0, expected);
        let p = Probe::try_parse_from(["voltd", "--cloud-url", "http://x", "--services", "none"])
            .unwrap();
        assert_eq!(
            p.overrides.0,
            Flags::new()
                .with("cloud-url", "http://x")
                .with("services", "none")
        );
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
