//! Where Elevate may send requests, tokens and secrets: `https://` anywhere, plain `http://` only
//! to a loopback host (emulators, test fakes, local receivers).
//!
//! Configuration checks its variables with it, and adapters check the addresses they learn at
//! run time (the `jwks_uri` of an OpenID discovery document) with it, so neither imports the
//! other. A URL is judged by the WHATWG parser (the `url` crate) — the parser the HTTP client
//! itself uses — never by splitting strings by hand: `http://evil.example\@127.0.0.1/` is a
//! request to `evil.example`, and is judged as one.
//!
//! Must never accept a URL that carries credentials, or whose host a client would reach
//! differently from what was checked.

use url::{Host, Url};

/// Why an address is refused. The caller names the variable or field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("must be an absolute https:// URL with a host")]
    NotAbsolute,
    #[error("must be an https:// URL")]
    Scheme,
    #[error("plain http:// is allowed only for loopback addresses; use https://")]
    PlainHttp,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("must not contain spaces or control characters")]
    Whitespace,
}

/// Parses an endpoint and applies the rule. Surrounding whitespace is ignored; a trailing `/`
/// on a bare base URL is not significant.
pub fn parse(value: &str) -> Result<Url, EndpointError> {
    let value = value.trim();
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EndpointError::Whitespace);
    }
    let url = Url::parse(value).map_err(|_| EndpointError::NotAbsolute)?;
    if url.host().is_none() || url.cannot_be_a_base() {
        return Err(EndpointError::NotAbsolute);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::Credentials);
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(EndpointError::PlainHttp),
        _ => Err(EndpointError::Scheme),
    }
}

/// The URL as text, without the trailing `/` of a bare base (`https://host/` → `https://host`);
/// anything with a query or fragment is kept exactly (a signature may end in `/`).
pub fn display(url: &Url) -> String {
    let text = url.as_str();
    if url.query().is_none() && url.fragment().is_none() {
        text.trim_end_matches('/').to_owned()
    } else {
        text.to_owned()
    }
}

/// Whether the URL's host, as the client will resolve it, is this machine: `localhost`,
/// `127.0.0.0/8` or `::1`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Percent-encodes a URL path segment or query value: everything but RFC 3986's unreserved
/// characters (so a space is `%20`, never `+`, and nothing can end a segment or a parameter).
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The origin (`scheme://host[:port]`) of a URL, as browsers send it in `Origin`.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_to_loopback() {
        assert!(parse("https://elevate.contoso.com/").is_ok());
        assert!(parse("http://127.0.0.1:7071").is_ok());
        assert!(parse("http://127.9.9.9/x").is_ok());
        assert!(parse("http://localhost").is_ok());
        assert!(parse("http://LOCALHOST:8080/a").is_ok());
        assert!(parse("http://[::1]:8080").is_ok());
        assert_eq!(parse("http://127.0.0.1.evil.com"), Err(EndpointError::PlainHttp));
        assert_eq!(parse("http://10.0.0.1/"), Err(EndpointError::PlainHttp));
        assert_eq!(parse("ftp://x"), Err(EndpointError::Scheme));
        assert_eq!(parse("https://"), Err(EndpointError::NotAbsolute));
        assert_eq!(parse("/relative"), Err(EndpointError::NotAbsolute));
        assert_eq!(parse("https://a b.example"), Err(EndpointError::Whitespace));
    }

    #[test]
    fn the_host_is_the_one_the_client_would_reach() {
        // The review's finding: a hand-split check took the part after `@` as the host, while
        // the WHATWG parser reads `\` as `/` in special schemes and sends this to evil.example.
        let url = Url::parse("http://evil.example\\@127.0.0.1/hook").unwrap();
        assert_eq!(url.host_str(), Some("evil.example"));
        assert_eq!(parse("http://evil.example\\@127.0.0.1/hook"), Err(EndpointError::PlainHttp));
        // Userinfo is refused outright, loopback or not.
        assert_eq!(parse("http://localhost@evil.com"), Err(EndpointError::Credentials));
        assert_eq!(parse("http://evil.com@localhost/"), Err(EndpointError::Credentials));
        assert_eq!(parse("https://user:pw@host.example/"), Err(EndpointError::Credentials));
        // Numeric forms are normalised before judging, as the client would.
        assert!(parse("http://127.1/").is_ok_and(|u| u.host_str() == Some("127.0.0.1")));
        assert!(parse("http://0x7f000001/").is_ok());
        assert_eq!(parse("http://[::ffff:8.8.8.8]/"), Err(EndpointError::PlainHttp));
    }

    #[test]
    fn display_trims_only_a_bare_trailing_slash() {
        assert_eq!(display(&parse("https://a.example/").unwrap()), "https://a.example");
        assert_eq!(display(&parse("https://a.example/base/").unwrap()), "https://a.example/base");
        assert_eq!(display(&parse("https://a.example/h?sig=ab/").unwrap()), "https://a.example/h?sig=ab/");
        assert_eq!(origin(&parse("http://127.0.0.1:7071/api").unwrap()), "http://127.0.0.1:7071");
    }
}
