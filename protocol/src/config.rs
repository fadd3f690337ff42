//! Layered TOML configuration shared by the agent and the server: the
//! compiled-in defaults, then a file, then `PREFIX<SECTION>__<KEY>`
//! environment variables. Pure: the environment is passed in.

/// The `[… .ice]` section of the agent's and the server's configuration:
/// how their WebRTC peers gather candidates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceSettings {
    pub stun_server: String,
    pub turn_server: String,
    pub local_addresses: Vec<String>,
    pub port_min: u16,
    pub port_max: u16,
}

impl IceSettings {
    /// Checks the section named `section` (for messages).
    pub fn validate(&self, section: &str) -> Result<(), String> {
        if self.port_min > self.port_max {
            return Err(format!(
                "{section}.port_min must not exceed {section}.port_max"
            ));
        }
        for address in &self.local_addresses {
            if address.parse::<std::net::IpAddr>().is_err() {
                return Err(format!(
                    "{section}.local_addresses: '{address}' is not an IP address"
                ));
            }
        }
        Ok(())
    }
}

/// The file's text, if a path was given; errors name the file.
pub fn read_file(path: Option<&std::path::Path>) -> Result<Option<String>, String> {
    path.map(|p| {
        std::fs::read_to_string(p).map_err(|e| format!("reading config file {}: {e}", p.display()))
    })
    .transpose()
}

/// The layers merged and read as `T`; errors name the layer or the key at fault.
pub fn parse<T: serde::de::DeserializeOwned>(
    defaults: &str,
    file: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
    prefix: &str,
) -> Result<T, String> {
    let merged = layered(defaults, file, env, prefix)?;
    toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| format!("invalid configuration: {e}"))
}

/// Merges the layers into one table; errors name the layer at fault.
pub fn layered(
    defaults: &str,
    file: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
    prefix: &str,
) -> Result<toml::Table, String> {
    let mut merged: toml::Table = defaults
        .parse()
        .map_err(|e| format!("built-in defaults: {e}"))?;
    if let Some(text) = file {
        let overlay: toml::Table = text.parse().map_err(|e| format!("config file: {e}"))?;
        merge(&mut merged, overlay);
    }
    for (name, value) in env {
        let Some(path) = name.strip_prefix(prefix) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        set_path(&mut merged, &keys, env_value(&value))
            .map_err(|e| format!("environment variable {name}: {e}"))?;
    }
    Ok(merged)
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    match keys {
        [] => Err("empty key".to_owned()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                _ => Err(format!("{first} is not a section")),
            }
        }
    }
}

/// A value is read as TOML when it is one (numbers, booleans, arrays), else
/// as a plain string.
fn env_value(text: &str) -> toml::Value {
    match format!("v = {text}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(text.to_owned())),
        Err(_) => toml::Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_settings_name_a_bad_port_range_and_a_bad_address() {
        let ice = IceSettings {
            stun_server: String::new(),
            turn_server: String::new(),
            local_addresses: vec!["127.0.0.1".into(), "::1".into()],
            port_min: 0,
            port_max: 0,
        };
        assert_eq!(ice.validate("media.ice"), Ok(()));
        let ports = IceSettings {
            port_min: 10,
            port_max: 5,
            ..ice.clone()
        };
        assert!(
            ports
                .validate("video.ice")
                .unwrap_err()
                .contains("video.ice.port_min")
        );
        let host = IceSettings {
            local_addresses: vec!["eth0".into()],
            ..ice
        };
        assert!(host.validate("media.ice").unwrap_err().contains("'eth0'"));
    }

    #[test]
    fn later_layers_win_and_strings_stay_strings() {
        let defaults = "[a]\nx = 1\ny = \"s\"\n[b]\nz = true\n";
        let env = [
            ("P__A__X".to_owned(), "7".to_owned()),
            ("P__B__Z".to_owned(), "false".to_owned()),
            ("P__A__Y".to_owned(), "/dev/tty0".to_owned()),
            ("OTHER".to_owned(), "1".to_owned()),
        ];
        let t = layered(defaults, Some("[a]\nx = 2\n"), env, "P__").unwrap();
        assert_eq!(t["a"]["x"].as_integer(), Some(7));
        assert_eq!(t["a"]["y"].as_str(), Some("/dev/tty0"));
        assert_eq!(t["b"]["z"].as_bool(), Some(false));
    }

    #[test]
    fn a_broken_file_is_named() {
        let err = layered("", Some("[a"), [], "P__").unwrap_err();
        assert!(err.starts_with("config file"), "{err}");
    }
}
