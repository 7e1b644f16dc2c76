//! Where a merchant's webhook may point. A merchant chooses the URL, and the
//! tower sends requests to it from inside the operator's network, so a URL
//! must not make the tower a probe of that network (SSRF): http(s) only, no
//! credentials, and, unless `notify.allow_private_targets`, no address that
//! is loopback, private, link-local, shared (CGNAT), multicast, reserved or
//! unspecified, whether written as an IP or reached through DNS.
//!
//! The check runs twice: when the endpoint is created (every address its
//! host resolves to), and at each delivery, because a name can resolve
//! elsewhere later (DNS rebinding): the sender's client resolves through
//! [`GuardedResolver`], which drops refused addresses, checks an IP host
//! itself, follows no redirects and uses no proxy (whose address would be
//! the one checked).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

/// The longest URL an endpoint may have.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL is not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    /// Not a usable http(s) URL (`invalid_webhook_url`).
    Invalid(String),
    /// A usable URL whose target the tower refuses to reach (`webhook_target_refused`).
    Refused(String),
}

/// Parses `text` as an endpoint URL: absolute http(s), a host, no user or
/// password (a secret in a URL would be shown back by every listing).
pub fn parse(text: &str) -> Result<Url, UrlProblem> {
    if text.len() > MAX_URL_LEN {
        return Err(UrlProblem::Invalid(format!(
            "the url is longer than {MAX_URL_LEN} characters"
        )));
    }
    let url = Url::parse(text).map_err(|e| UrlProblem::Invalid(format!("the url does not parse: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlProblem::Invalid(format!(
            "the url's scheme is {:?}; only http and https are taken",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(UrlProblem::Invalid("the url has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlProblem::Invalid(
            "the url carries credentials; authenticate with the signature instead".into(),
        ));
    }
    Ok(url)
}

/// Why `ip` is no target for a merchant's webhook, or `None` when it may be.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (169, 254, _) => "link-local (169.254.0.0/16)",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        (240..=255, _, _) => "reserved or broadcast (240.0.0.0/4)",
        _ => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    // An IPv4 address inside an IPv6 one reaches that IPv4 address: judged as it.
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    match segments {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => {
            return refused_v4(embedded(hi, lo));
        }
        // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the embedded address.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] | [0x2002, hi, lo, ..] => {
            return refused_v4(embedded(hi, lo));
        }
        _ => {}
    }
    let first = segments[0];
    Some(match first {
        _ if first & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        _ if first & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        _ if first & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        _ if first & 0xff00 == 0xff00 => "multicast (ff00::/8)",
        0x2001 if segments[1] == 0x0db8 => "documentation (2001:db8::/32)",
        _ => return None,
    })
}

/// Refuses `url` when its host is, or resolves to, an address of
/// [`refused_range`]; with `allow_private`, takes any host (and resolves
/// nothing). A name that does not resolve is refused as invalid.
pub async fn check(url: &Url, allow_private: bool) -> Result<(), UrlProblem> {
    if allow_private {
        return Ok(());
    }
    let addresses: Vec<IpAddr> = match (host_ip(url), url.host_str()) {
        (Some(ip), _) => vec![ip],
        (None, Some(name)) => {
            let port = url.port_or_known_default().unwrap_or(443);
            let resolved =
                tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((name, port)))
                    .await
                    .map_err(|_| UrlProblem::Invalid(format!("the host {name} did not resolve within 5 s")))?
                    .map_err(|e| UrlProblem::Invalid(format!("the host {name} does not resolve: {e}")))?;
            resolved.map(|a| a.ip()).collect()
        }
        (None, None) => return Err(UrlProblem::Invalid("the url has no host".into())),
    };
    if addresses.is_empty() {
        return Err(UrlProblem::Invalid("the url's host has no address".into()));
    }
    for ip in addresses {
        if let Some(range) = refused_range(ip) {
            return Err(UrlProblem::Refused(format!(
                "the url's host is or resolves to {ip}, a {range} address; the tower does not send webhooks into private networks"
            )));
        }
    }
    Ok(())
}

/// The url's host when it is an IP address. The URL parser has already
/// turned every IPv4 spelling (`0x7f.1`, `2130706433`) into dotted form and
/// put IPv6 in brackets, so a name never parses as one.
fn host_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// At delivery: refuses an IP host in a refused range (reqwest resolves no
/// IP, so [`GuardedResolver`] never sees one).
pub fn check_ip_host(url: &Url) -> Result<(), String> {
    let Some(ip) = host_ip(url) else {
        return Ok(());
    };
    match refused_range(ip) {
        Some(range) => Err(format!("target refused: {ip} is a {range} address")),
        None => Ok(()),
    }
}

/// A resolver that keeps only the addresses a merchant's webhook may reach,
/// so the connection goes to an address that was checked, not to whatever
/// the name resolves to a moment after a check.
#[derive(Debug, Default)]
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = resolved.filter(|a| refused_range(a.ip()).is_none()).collect();
            if allowed.is_empty() {
                return Err(format!("target refused: {host} resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client of merchants' endpoints: no redirects (a 3xx is a
/// failed attempt), no proxy, and, unless `allow_private`, the guarded resolver.
pub fn merchant_client(timeout: Duration, allow_private: bool) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if allow_private {
        builder.build()
    } else {
        builder.dns_resolver(Arc::new(GuardedResolver)).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> bool {
        refused_range(ip.parse().unwrap()).is_some()
    }

    #[test]
    fn private_and_special_addresses_are_refused_public_ones_taken() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "2001:db8::1",
            // IPv4 inside IPv6: mapped, compatible, NAT64, 6to4.
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
        for ip in [
            "93.184.215.14",
            "8.8.8.8",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "169.255.0.1",
            "11.0.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(!refused(ip), "{ip} should be taken");
        }
    }

    #[test]
    fn only_http_urls_without_credentials_parse() {
        assert!(parse("https://hooks.example.com/dogetower?x=1").is_ok());
        assert!(parse("http://203.0.113.9:8080/h").is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://example.com/",
            "example.com/hook",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "",
        ] {
            assert!(matches!(parse(bad), Err(UrlProblem::Invalid(_))), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(parse(&long), Err(UrlProblem::Invalid(_))));
    }

    #[tokio::test]
    async fn targets_are_checked_by_address_and_by_name() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://10.0.0.1/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:7f00:1]/",
            // WHATWG parsing makes these 127.0.0.1 before any check.
            "http://0x7f.1/",
            "http://2130706433/",
            // A name that resolves to loopback.
            "http://localhost:9/",
        ] {
            let url = parse(url).unwrap();
            assert!(
                matches!(check(&url, false).await, Err(UrlProblem::Refused(_))),
                "{url}"
            );
            assert_eq!(
                check(&url, true).await,
                Ok(()),
                "{url} with allow_private_targets"
            );
        }
        let public = parse("https://93.184.215.14/hook").unwrap();
        assert_eq!(check(&public, false).await, Ok(()));
        assert!(check_ip_host(&parse("http://[fd00::1]/").unwrap()).is_err());
        assert!(check_ip_host(&public).is_ok());
        assert!(check_ip_host(&parse("https://example.com/").unwrap()).is_ok());
    }

    #[tokio::test]
    async fn the_guarded_resolver_drops_refused_addresses() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(GuardedResolver.resolve(name).await.is_err());
    }
}
