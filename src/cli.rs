//! Command line: Go-style single-dash flags (`-config proxy.json`, as the
//! reference is started today) and their double-dash forms.

use std::path::PathBuf;

/// What the process was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the proxy with this config file.
    Run {
        /// Config file path.
        config: PathBuf,
    },
    /// Validate a config file and exit 0 (valid) or 1 (invalid).
    CheckConfig {
        /// Config file path.
        config: PathBuf,
    },
    /// The operator's console (`ctl ...`, `top ...`): a client of a running proxy; the
    /// arguments are its own (the subcommand name first).
    Console(Vec<String>),
    /// Print version information.
    Version,
    /// Print usage.
    Help,
}

/// Default config path, relative to the working directory (as the reference).
pub const DEFAULT_CONFIG: &str = "proxy.json";

/// The subcommands handed to the operator's console.
const CONSOLE: [&str; 2] = ["ctl", "top"];

/// Usage text.
pub const USAGE: &str = "\
Usage: influx-proxy [-config PATH] [-check-config PATH] [-version]
       influx-proxy ctl <command> [options]   (operate a running proxy; ctl --help)
       influx-proxy top [options]             (live terminal dashboard; top --help)

  -config, --config PATH        config file (default: proxy.json)
  -check-config, --check-config PATH
                                validate the config file and exit (0 = valid, 1 = invalid)
  -version, --version           print version and git commit, then exit
  -h, --help                    print this help
";

/// Parses arguments (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut config = None;
    let mut check = None;
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| CONSOLE.contains(&a.as_str())) {
        return Ok(Command::Console(args.collect()));
    }
    while let Some(arg) = args.next() {
        let flag = arg.trim_start_matches('-');
        if flag.len() == arg.len() {
            return Err(format!("unexpected argument: {arg}"));
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        match name {
            "config" | "check-config" | "t" => {
                let value = match inline {
                    Some(v) => v,
                    None => args
                        .next()
                        .ok_or_else(|| format!("flag needs an argument: -{name}"))?,
                };
                if name == "config" {
                    config = Some(PathBuf::from(value));
                } else {
                    check = Some(PathBuf::from(value));
                }
            }
            "version" | "v" => return Ok(Command::Version),
            "h" | "help" => return Ok(Command::Help),
            _ => return Err(format!("flag provided but not defined: -{name}")),
        }
    }
    Ok(match check {
        Some(config) => Command::CheckConfig { config },
        None => Command::Run {
            config: config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
        },
    })
}

/// The `-version` text.
pub fn version_text() -> String {
    format!(
        "Version:    {}\nGit commit: {}\nRust:       {}\nOS/Arch:    {}/{}\n",
        env!("CARGO_PKG_VERSION"),
        env!("INFLUX_PROXY_GIT_COMMIT"),
        option_env!("CARGO_PKG_RUST_VERSION").unwrap_or("unknown"),
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn single_and_double_dash_config_are_the_same() {
        let want = Command::Run {
            config: "a.json".into(),
        };
        assert_eq!(p(&["-config", "a.json"]), Ok(want.clone()));
        assert_eq!(p(&["--config", "a.json"]), Ok(want.clone()));
        assert_eq!(p(&["--config=a.json"]), Ok(want));
    }

    #[test]
    fn no_arguments_means_proxy_json_in_the_working_directory() {
        assert_eq!(
            p(&[]),
            Ok(Command::Run {
                config: "proxy.json".into()
            })
        );
    }

    #[test]
    fn check_config_and_version_are_recognised() {
        assert_eq!(
            p(&["--check-config", "x.json"]),
            Ok(Command::CheckConfig {
                config: "x.json".into()
            })
        );
        assert_eq!(p(&["-version"]), Ok(Command::Version));
        assert_eq!(p(&["--version"]), Ok(Command::Version));
        assert!(version_text().contains("Git commit:"));
    }

    #[test]
    fn unknown_flags_and_missing_values_are_errors() {
        assert!(p(&["-nope"]).unwrap_err().contains("not defined"));
        assert!(p(&["-config"]).unwrap_err().contains("needs an argument"));
        assert!(p(&["stray"]).is_err());
    }

    #[test]
    fn console_subcommands_keep_their_own_arguments() {
        assert_eq!(
            p(&["ctl", "status", "--json"]),
            Ok(Command::Console(vec![
                "ctl".into(),
                "status".into(),
                "--json".into()
            ]))
        );
        assert_eq!(p(&["top"]), Ok(Command::Console(vec!["top".into()])));
    }
}
