//! `voltd config show`: the effective configuration as TOML.
//!
//! The model's `Serialize` already writes every secret as `***`
//! (`daemon_password`, `enrollment_token`, the proxy's credentials,
//! `services.*.password`, secret-looking `services.*.env` values); this
//! adds what needs two keys at once: a service's literal password inside
//! its command line or environment values. The output is itself a valid
//! config file (with `***` for the secrets).

use super::Settings;
use super::layer::Loaded;
use crate::api::vocab::ServiceKind;
use toml::{Table, Value};

/// The effective configuration as TOML, secrets replaced by `***`.
pub fn show(loaded: &Loaded) -> String {
    let s = &loaded.settings;
    let mut out = String::from("# The effective voltd configuration; secrets are shown as ***.\n");
    match &loaded.file {
        Some(p) => out.push_str(&format!("# Config file: {}\n", p.display())),
        None => out.push_str("# No config file: defaults, environment and flags.\n"),
    }
    out.push_str(&format!(
        "# Admin socket: {}\n\n",
        s.admin_socket().display()
    ));
    match render(s) {
        Ok(text) => out.push_str(&text),
        Err(e) => out.push_str(&format!("# cannot render: {e}\n")),
    }
    out
}

fn render(s: &Settings) -> Result<String, toml::ser::Error> {
    let mut doc = Table::try_from(s)?;
    for kind in ServiceKind::ALL {
        let svc = s.services.get(kind);
        let Some(password) = svc.password.as_ref().map(|p| p.expose()) else {
            continue;
        };
        if password.is_empty() {
            continue;
        }
        let Some(Value::Table(t)) = doc
            .get_mut("services")
            .and_then(Value::as_table_mut)
            .and_then(|services| services.get_mut(kind.name()))
        else {
            continue;
        };
        t.insert(
            "command".into(),
            Value::Array(
                svc.masked_command()
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            ),
        );
        if let Some(Value::Table(env)) = t.get_mut("env") {
            for (_, v) in env.iter_mut() {
                if let Value::String(text) = v {
                    let masked = text.replace(password, "***");
                    *text = masked;
                }
            }
        }
    }
    toml::to_string(&doc)
}
