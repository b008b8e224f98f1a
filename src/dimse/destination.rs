//! Where C-STORE and C-ECHO go: a destination written `AE@HOST:PORT`, and
//! the rules for an AE title. Parsed once, where the setting is read (a
//! flag, the environment, the config file); the rest of the program holds a
//! checked [`Destination`].

use std::fmt;

/// A DICOM destination written `AE@HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

const HINT: &str = "write the destination as AE@HOST:PORT, e.g. PACS@10.0.0.5:104";

/// Why a destination cannot be used as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationError {
    NoAeTitle { raw: String },
    AeTitle { raw: String, problem: AeTitleError },
    NoPort { raw: String },
    NoHost { raw: String },
    BadHost { raw: String, host: String },
    BadPort { raw: String, port: String },
}

impl fmt::Display for DestinationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAeTitle { raw } => write!(f, "the destination `{raw}` has no AE title; {HINT}"),
            // The problem is part of this message (not a `source`): clap
            // shows a flag's error without its causes.
            Self::AeTitle { raw, problem } => write!(f, "in the destination `{raw}`: {problem}"),
            Self::NoPort { raw } => write!(f, "the destination `{raw}` has no port; {HINT}"),
            Self::NoHost { raw } => write!(f, "the destination `{raw}` has no host; {HINT}"),
            Self::BadHost { raw, host } => write!(
                f,
                "the destination `{raw}` has host `{host}`, which is not a host name or IP address; {HINT}"
            ),
            Self::BadPort { raw, port } => write!(
                f,
                "the destination `{raw}` has port `{port}`, which is not a TCP port number; {HINT}"
            ),
        }
    }
}

impl std::error::Error for DestinationError {}

/// Why an AE title cannot be used (PS3.5: 1 to 16 characters of the default
/// repertoire, no backslash or control characters, not all spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AeTitleError {
    Empty,
    TooLong(String),
    BadCharacters(String),
}

impl fmt::Display for AeTitleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the AE title is empty"),
            Self::TooLong(ae) => write!(f, "the AE title `{ae}` is longer than 16 characters"),
            Self::BadCharacters(ae) => write!(
                f,
                "the AE title `{}` contains characters not allowed in an AE title",
                ae.escape_debug()
            ),
        }
    }
}

impl std::error::Error for AeTitleError {}

/// Checks an AE title and returns it without its padding spaces.
pub fn check_ae_title(raw: &str) -> Result<String, AeTitleError> {
    let ae = raw.trim();
    if ae.is_empty() {
        return Err(AeTitleError::Empty);
    }
    if ae.len() > 16 {
        return Err(AeTitleError::TooLong(ae.to_string()));
    }
    if !ae.chars().all(|c| c.is_ascii() && !c.is_ascii_control() && c != '\\') {
        return Err(AeTitleError::BadCharacters(ae.to_string()));
    }
    Ok(ae.to_string())
}

/// A host as a socket address takes it: a name or an IPv4 address (letters,
/// digits, `-`, `.`, `_`), or an IPv6 address (hex digits, `:`, `.`, `%` zone).
fn is_host(host: &str) -> bool {
    if host.contains(':') {
        host.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        host.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    }
}

impl Destination {
    pub fn parse(raw: &str) -> Result<Destination, DestinationError> {
        let (ae, addr) = raw
            .split_once('@')
            .ok_or_else(|| DestinationError::NoAeTitle { raw: raw.to_string() })?;
        let ae_title = check_ae_title(ae).map_err(|problem| DestinationError::AeTitle {
            raw: raw.to_string(),
            problem,
        })?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| DestinationError::NoPort { raw: raw.to_string() })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(DestinationError::NoHost { raw: raw.to_string() });
        }
        if !is_host(host) {
            return Err(DestinationError::BadHost {
                raw: raw.to_string(),
                host: host.escape_debug().to_string(),
            });
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| DestinationError::BadPort {
                raw: raw.to_string(),
                port: port.to_string(),
            })?;
        Ok(Destination {
            ae_title,
            host: host.to_string(),
            port,
        })
    }

    /// A name for this destination that is safe as a file name in the cache.
    pub fn key(&self) -> String {
        let raw = format!("{}@{}_{}", self.ae_title, self.host, self.port);
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "@._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// `PACS@10.0.0.5:104` back from a [`key`](Self::key) `PACS@10.0.0.5_104`
    /// (characters the key replaced stay replaced).
    pub fn label_of_key(key: &str) -> String {
        match key.rsplit_once('_') {
            Some((host, port)) if port.parse::<u16>().is_ok() => format!("{host}:{port}"),
            _ => key.to_string(),
        }
    }
}

impl std::str::FromStr for Destination {
    type Err = DestinationError;

    fn from_str(raw: &str) -> Result<Destination, DestinationError> {
        Destination::parse(raw)
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.ae_title, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.ae_title, self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_parses_and_rejects() {
        let d = Destination::parse("PACS@10.0.0.5:104").unwrap();
        assert_eq!(
            (d.ae_title.as_str(), d.host.as_str(), d.port),
            ("PACS", "10.0.0.5", 104)
        );
        assert_eq!(d.to_string(), "PACS@10.0.0.5:104");
        assert_eq!(Destination::parse("X@[::1]:11112").unwrap().host, "::1");
        assert_eq!(
            Destination::parse("X@pacs-1.example.org:104").unwrap().host,
            "pacs-1.example.org"
        );
        for bad in [
            "PACS",
            "PACS@host",
            "@host:104",
            "PACS@host:0",
            "PACS@:104",
            "WAYTOOLONGAETITLE1@h:1",
            "PACS@@host:104",
            "PACS@ho st:104",
            "PACS@host/x:104",
            "PACS@[::g]:104",
            "PACS@host:104x",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
        let e = Destination::parse("PACS@@host:104").unwrap_err();
        assert!(e.to_string().contains("host `@host`, which is not a host name"), "{e}");
    }

    #[test]
    fn ae_titles() {
        assert_eq!(check_ae_title(" PACS ").unwrap(), "PACS");
        assert_eq!(check_ae_title("  "), Err(AeTitleError::Empty));
        assert!(matches!(check_ae_title("A\\B"), Err(AeTitleError::BadCharacters(_))));
        assert!(matches!(
            check_ae_title("ABCDEFGHIJKLMNOPQ"),
            Err(AeTitleError::TooLong(_))
        ));
    }
}
