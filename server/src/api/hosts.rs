//! Which `Host` headers the server answers: the defence against DNS rebinding. A page on
//! another site can point its own host name at 127.0.0.1 and then read a server on this
//! machine as if it were same-origin; its requests still carry that host name, so a server
//! on a loopback address answers only the loopback names and those its operator adds.

use std::net::IpAddr;

/// The host names a server answers (the `Host` header, port aside, compared without case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// Any host: a server on a public or wildcard address, reached under names it cannot know.
    Any,
    /// These names only (lower case, IPv6 addresses without brackets).
    Only(Vec<String>),
}

/// The names of this machine's loopback interface, sorted.
const LOOPBACK_NAMES: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

impl Default for AllowedHosts {
    /// The loopback names, as for the default `--addr 127.0.0.1:8080`.
    fn default() -> Self {
        AllowedHosts::Only(LOOPBACK_NAMES.iter().map(|s| s.to_string()).collect())
    }
}

impl AllowedHosts {
    /// The hosts of a server bound to `ip`, with the names its operator added (`*`: any).
    /// On a loopback address: the loopback names and the added ones. Elsewhere: any host,
    /// unless names were added, then those, the bound address and the loopback names.
    pub fn for_bind(ip: IpAddr, added: &[String]) -> AllowedHosts {
        if added.iter().any(|h| h.trim() == "*") {
            return AllowedHosts::Any;
        }
        if !ip.is_loopback() && added.is_empty() {
            return AllowedHosts::Any;
        }
        let mut names: Vec<String> = LOOPBACK_NAMES.iter().map(|s| s.to_string()).collect();
        if !ip.is_loopback() && !ip.is_unspecified() {
            names.push(ip.to_string());
        }
        names.extend(added.iter().map(|h| normalise(h)).filter(|h| !h.is_empty()));
        names.sort();
        names.dedup();
        AllowedHosts::Only(names)
    }

    /// Whether a request with this `Host` header value is answered.
    pub fn allows(&self, host: &str) -> bool {
        match self {
            AllowedHosts::Any => true,
            AllowedHosts::Only(names) => {
                let name = normalise(strip_port(host));
                !name.is_empty() && names.iter().any(|n| *n == name)
            }
        }
    }
}

/// `host:port`, `[v6]:port` or `[v6]` without the port and brackets; a bare name as it is.
fn strip_port(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        // One colon followed by digits is a port; more colons would be a bare IPv6 address.
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Lower case, without a trailing dot (`localhost.` is `localhost`) or brackets.
fn normalise(name: &str) -> String {
    name.trim().trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_server_answers_loopback_names_only() {
        let hosts = AllowedHosts::for_bind("127.0.0.1".parse().unwrap(), &[]);
        for ok in ["localhost", "localhost:8080", "LOCALHOST.:8080", "127.0.0.1:8080", "[::1]:8080", "[::1]", "::1"] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "localhost.evil.example:80", "", ":8080", "[]"] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        assert_eq!(hosts, AllowedHosts::default());
    }

    #[test]
    fn the_operator_adds_names_or_allows_any() {
        let added = vec!["Maze.Example".to_string()];
        let hosts = AllowedHosts::for_bind("127.0.0.1".parse().unwrap(), &added);
        assert!(hosts.allows("maze.example:8080") && hosts.allows("localhost"));
        assert!(!hosts.allows("other.example"));
        assert_eq!(AllowedHosts::for_bind("127.0.0.1".parse().unwrap(), &["*".into()]), AllowedHosts::Any);
        // A public or wildcard address answers any name unless names are given.
        assert_eq!(AllowedHosts::for_bind("0.0.0.0".parse().unwrap(), &[]), AllowedHosts::Any);
        let public = AllowedHosts::for_bind("192.0.2.7".parse().unwrap(), &added);
        assert!(public.allows("192.0.2.7:8080") && public.allows("maze.example"));
        assert!(!public.allows("evil.example"));
    }
}
