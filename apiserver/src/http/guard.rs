//! What keeps a web page out of an API that has no authentication yet (pure). A browser
//! can send a request to 127.0.0.1 from any page it shows, and a name it resolves to
//! loopback (DNS rebinding) carries the page's own host name; neither kubectl, client-go
//! nor kube-rs sends an `Origin`, and they name the server as the kubeconfig does. So a
//! request with an `Origin`, or for a host that is neither an address nor `localhost`, is
//! refused. (Authentication, with the security work, makes this a second line.)

use http::{header, HeaderMap};

use crate::error::ApiError;

/// Refuses what only a browser would send.
pub fn admit(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(header::ORIGIN) {
        return Err(ApiError::Forbidden {
            message: "requests from web pages (with an Origin header) are refused: this API has \
                      no authentication yet"
                .into(),
        });
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !host.is_empty() && !is_address_or_localhost(host) {
        return Err(ApiError::Forbidden {
            message: format!(
                "the host {host:?} is not served: name the server by its address (as `rudder \
                 config kubeconfig` does) or as localhost"
            ),
        });
    }
    Ok(())
}

/// `127.0.0.1:6443`, `[::1]:6443`, `10.0.0.5`, `localhost:6443`.
fn is_address_or_localhost(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), value.parse().unwrap()))
            .collect()
    }

    #[test]
    fn clients_are_admitted_and_browsers_are_not() {
        assert!(admit(&headers(&[(header::HOST, "127.0.0.1:6443")])).is_ok());
        assert!(admit(&headers(&[(header::HOST, "[::1]:6443")])).is_ok());
        assert!(admit(&headers(&[(header::HOST, "localhost")])).is_ok());
        assert!(admit(&HeaderMap::new()).is_ok());
        let page = admit(&headers(&[
            (header::HOST, "127.0.0.1:6443"),
            (header::ORIGIN, "https://evil.example"),
        ]))
        .unwrap_err();
        assert!(page.to_string().contains("Origin"), "{page}");
        let rebound = admit(&headers(&[(header::HOST, "evil.example:6443")])).unwrap_err();
        assert!(rebound.to_string().contains("evil.example"), "{rebound}");
    }
}
