//! Finding the proxy key in a request.

use http::HeaderMap;

/// Headers a client may carry its proxy key in, in the order they are tried.
pub const KEY_HEADERS: [&str; 4] = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// The key a client presented and the header that carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    /// The key text (not validated yet).
    pub key: &'a str,
    /// Which header carried it.
    pub header: &'static str,
}

/// Finds the proxy key. `Authorization` must use the Bearer scheme; other headers carry the bare
/// key. Values that are not keys (`sk-…`) still count as presented: they fail later as
/// `invalid_key`, rather than looking like no key at all.
pub fn presented(headers: &HeaderMap) -> Option<Presented<'_>> {
    for name in KEY_HEADERS {
        let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let key = if name == "authorization" {
            match v.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                // An AWS SDK signing with the proxy key as its access key id (boto3 with
                // aws_access_key_id=lk_…): the key is the credential's access key id.
                _ => match crate::sigv4::proxy_key_from_sigv4(v) {
                    Some(k) => k,
                    None => continue,
                },
            }
        } else {
            v.trim()
        };
        if !key.is_empty() {
            return Some(Presented { key, header: name });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn finds_each_header() {
        let m = h(&[("authorization", "Bearer lk_abc")]);
        assert_eq!(presented(&m).unwrap().key, "lk_abc");
        let m = h(&[("x-api-key", "lk_x")]);
        assert_eq!(presented(&m).unwrap().header, "x-api-key");
        let m = h(&[("api-key", " lk_y ")]);
        assert_eq!(presented(&m).unwrap().key, "lk_y");
        let m = h(&[("x-goog-api-key", "lk_z")]);
        assert_eq!(presented(&m).unwrap().header, "x-goog-api-key");
        let m = h(&[("authorization", "Basic abc"), ("x-api-key", "lk_q")]);
        assert_eq!(presented(&m).unwrap().key, "lk_q");
        assert!(presented(&h(&[("authorization", "Bearer ")])).is_none());
        assert!(presented(&HeaderMap::new()).is_none());
        let m = h(&[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=lk_sig/20260101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        )]);
        assert_eq!(presented(&m).unwrap().key, "lk_sig");
    }
}
