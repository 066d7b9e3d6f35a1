//! AWS Signature Version 4 for `sigv4:SERVICE:REGION` providers: Bedrock, and any AWS API an
//! operator registers as a custom provider.
//!
//! A SigV4 provider's stored credential is a small JSON document (what `latchkey connect bedrock`
//! reads on stdin), parsed by [`AwsCredential::parse`]:
//!
//! ```json
//! {"access_key_id": "AKIA…", "secret_access_key": "…", "session_token": "…", "region": "us-east-1"}
//! ```
//!
//! `session_token` and `region` are optional. The AWS CLI's credential-process shape
//! (`aws configure export-credentials --format process`: `AccessKeyId`, `SecretAccessKey`,
//! `SessionToken`, `Version`, `Expiration`) is accepted too.
//!
//! # How a request is re-signed
//!
//! Clients authenticate to Latchkey with their proxy key, either as a bearer token (boto3's
//! `AWS_BEARER_TOKEN_BEDROCK`) or as the access key id of an ordinary SigV4 signature
//! ([`proxy_key_from_sigv4`] finds it). Latchkey does **not** verify the client's signature: it
//! cannot, as there is no secret behind a proxy key used that way. The proxy key itself is the
//! credential, checked like any other, and the client's signature is thrown away: remove
//! [`CLIENT_AUTH_HEADERS`] from the request, then [`sign`] the request exactly as it will be sent
//! upstream and set the headers it returns.
//!
//! What is signed: the method, the path (as sent, already percent-encoded; for every service but
//! S3 the canonical URI encodes it a second time, so a Bedrock model id `…-v1:0`, which clients
//! send as `…-v1%3A0`, appears as `…-v1%253A0`, exactly as AWS computes it), the query, the
//! `host` header (with the port when it is not the scheme's default), `x-amz-date`,
//! `x-amz-security-token` when the credential has one, the headers the caller passes (see
//! [`headers_to_sign`]) and the SHA-256 of the body. Like boto3 for Bedrock, no
//! `x-amz-content-sha256` header is sent (S3 is the exception: it requires the header, and signs
//! the path without double-encoding or normalization).

use crate::errors::GatewayError;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign as aws_sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
    SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use http::HeaderMap;
use latchkey_vault::SecretString;
use serde_json::Value;
use std::fmt;
use std::time::SystemTime;

/// Request headers that carry a client's own AWS authentication. They must be removed before
/// Latchkey signs the request (the client's signature is never forwarded, and a stale
/// `x-amz-content-sha256` or `x-amz-security-token` would contradict Latchkey's signature).
pub const CLIENT_AUTH_HEADERS: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// The SigV4 algorithm name, as it opens an `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a credential could not be read or a request could not be signed. Messages never contain
/// a secret, and never echo the credential text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The stored (or submitted) AWS credential is not valid.
    #[error("invalid AWS credential: {0}")]
    InvalidCredential(String),
    /// The request cannot be signed as given (a bug in the caller, or a malformed request).
    #[error("cannot sign the request: {0}")]
    InvalidRequest(String),
    /// The signer refused the request.
    #[error("SigV4 signing failed: {0}")]
    Signing(String),
}

impl From<SigV4Error> for GatewayError {
    fn from(e: SigV4Error) -> Self {
        match e {
            SigV4Error::InvalidRequest(_) => GatewayError::new(400, "bad_request", e.to_string()),
            // A stored credential Latchkey cannot use is the operator's problem, not the client's.
            SigV4Error::InvalidCredential(_) | SigV4Error::Signing(_) => {
                GatewayError::internal(e.to_string())
            }
        }
    }
}

/// An AWS credential: access key id, secret, optional session token and optional region.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredential {
    /// The access key id (`AKIA…`, or `ASIA…` for temporary credentials).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// The session token of temporary (STS) credentials.
    pub session_token: Option<SecretString>,
    /// The region to sign for; when absent, the provider's `sigv4:SERVICE:REGION` region.
    pub region: Option<String>,
}

impl fmt::Debug for AwsCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id_prefix: String = self.access_key_id.chars().take(4).collect();
        f.debug_struct("AwsCredential")
            .field("access_key_id", &format_args!("{id_prefix}…"))
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .field("region", &self.region)
            .finish()
    }
}

fn bad(msg: impl Into<String>) -> SigV4Error {
    SigV4Error::InvalidCredential(msg.into())
}

/// The names a credential field may go by: ours, then the AWS CLI credential-process name, then
/// the `~/.aws/credentials` name.
const ACCESS_KEY_NAMES: [&str; 3] = ["access_key_id", "AccessKeyId", "aws_access_key_id"];
const SECRET_NAMES: [&str; 3] = [
    "secret_access_key",
    "SecretAccessKey",
    "aws_secret_access_key",
];
const TOKEN_NAMES: [&str; 3] = ["session_token", "SessionToken", "aws_session_token"];
const REGION_NAMES: [&str; 2] = ["region", "Region"];
/// Fields of the AWS CLI credential-process output that carry nothing Latchkey needs.
const IGNORED_NAMES: [&str; 2] = ["Version", "Expiration"];

/// Takes the one field among `names` out of `map`; `Ok(None)` when absent or `null`.
fn take_string(
    map: &mut serde_json::Map<String, Value>,
    names: &[&str],
) -> Result<Option<String>, SigV4Error> {
    let mut found: Option<(&str, Value)> = None;
    for name in names {
        if let Some(v) = map.remove(*name) {
            if let Some((first, _)) = &found {
                return Err(bad(format!(
                    "both `{first}` and `{name}` are given; use one"
                )));
            }
            found = Some((name, v));
        }
    }
    match found {
        None | Some((_, Value::Null)) => Ok(None),
        Some((_, Value::String(s))) => Ok(Some(s)),
        Some((name, _)) => Err(bad(format!("`{name}` must be a string"))),
    }
}

/// A field name that is safe to repeat in an error message (a pasted secret is not).
fn printable_field_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
}

/// True for a plausible AWS region name: `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`.
pub fn valid_region(region: &str) -> bool {
    (1..=32).contains(&region.len())
        && region.as_bytes()[0].is_ascii_lowercase()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.ends_with('-')
        && !region.contains("--")
}

impl AwsCredential {
    /// Parses and validates the credential JSON. Error messages name fields, never values.
    pub fn parse(json: &str) -> Result<AwsCredential, SigV4Error> {
        let value: Value = serde_json::from_str(json).map_err(|e| {
            bad(format!(
                "expected a JSON object like {{\"access_key_id\": \"…\", \"secret_access_key\": \"…\", \"session_token\": \"…\" (optional), \"region\": \"us-east-1\"}}; the input is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let Value::Object(mut map) = value else {
            return Err(bad(
                "expected a JSON object with access_key_id, secret_access_key, optional session_token and region",
            ));
        };
        let access_key_id = take_string(&mut map, &ACCESS_KEY_NAMES)?;
        let secret = take_string(&mut map, &SECRET_NAMES)?.map(SecretString::new);
        let token = take_string(&mut map, &TOKEN_NAMES)?.map(SecretString::new);
        let region = take_string(&mut map, &REGION_NAMES)?;
        for name in IGNORED_NAMES {
            map.remove(name);
        }
        if let Some(name) = map.keys().next() {
            return Err(if printable_field_name(name) {
                bad(format!(
                    "unknown field `{name}`; expected access_key_id, secret_access_key, session_token, region"
                ))
            } else {
                bad("unknown field; expected access_key_id, secret_access_key, session_token, region")
            });
        }

        let access_key_id = access_key_id.ok_or_else(|| bad("`access_key_id` is missing"))?;
        if access_key_id.is_empty() {
            return Err(bad("`access_key_id` is empty"));
        }
        if access_key_id.starts_with("lk_") {
            return Err(bad(
                "`access_key_id` is a Latchkey proxy key; store the AWS access key id instead",
            ));
        }
        if access_key_id.len() > 128 || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad(
                "`access_key_id` must be 1 to 128 letters and digits (like AKIAIOSFODNN7EXAMPLE)",
            ));
        }

        let secret = secret.ok_or_else(|| bad("`secret_access_key` is missing"))?;
        if secret.is_empty() {
            return Err(bad("`secret_access_key` is empty"));
        }
        if secret.len() > 256 || !secret.expose().bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "`secret_access_key` must be at most 256 printable characters without spaces",
            ));
        }

        // An empty token is what some tools print for long-term keys: treat it as none.
        let session_token = token.filter(|t| !t.is_empty());
        if let Some(t) = &session_token {
            if t.len() > 8192 || !t.expose().bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(
                    "`session_token` must be at most 8192 printable characters without spaces",
                ));
            }
        }

        let region = region.filter(|r| !r.is_empty());
        if let Some(r) = &region {
            if !valid_region(r) {
                return Err(bad(
                    "`region` is not an AWS region name (like us-east-1 or eu-central-1)",
                ));
            }
        }

        Ok(AwsCredential {
            access_key_id,
            secret_access_key: secret,
            session_token,
            region,
        })
    }

    /// The region to sign for: the credential's own, or else the provider's (`scheme_region`).
    pub fn signing_region<'a>(&'a self, scheme_region: &'a str) -> &'a str {
        self.region.as_deref().unwrap_or(scheme_region)
    }
}

/// Moves an AWS endpoint host to another region: `bedrock-runtime.us-east-1.amazonaws.com` with
/// `from = us-east-1`, `to = eu-central-1` becomes `bedrock-runtime.eu-central-1.amazonaws.com`.
/// Returns `None` when there is nothing to change (same region) or the host is not a regional
/// AWS endpoint naming `from` (e.g. a base URL overridden to a local mock): keep it then.
///
/// AWS rejects a signature scoped to a region other than the endpoint's, so when a credential's
/// region differs from the provider's default, the request must go to that region's endpoint.
pub fn regional_host(host: &str, from: &str, to: &str) -> Option<String> {
    if from == to || !valid_region(to) {
        return None;
    }
    let lower = host.to_ascii_lowercase();
    let aws = [".amazonaws.com", ".amazonaws.com.cn", ".api.aws"]
        .iter()
        .any(|suffix| lower.ends_with(suffix));
    if !aws {
        return None;
    }
    let mut replaced = false;
    let labels: Vec<&str> = host
        .split('.')
        .map(|label| {
            if !replaced && label.eq_ignore_ascii_case(from) {
                replaced = true;
                to
            } else {
                label
            }
        })
        .collect();
    replaced.then(|| labels.join("."))
}

/// What to sign: the request exactly as it will be sent upstream.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// The credential to sign with.
    pub credential: &'a AwsCredential,
    /// The HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The `Host` header that will be sent: `bedrock-runtime.us-east-1.amazonaws.com`, with
    /// `:port` when the port is not the scheme's default (`127.0.0.1:9000`).
    pub host: &'a str,
    /// The path as it will be sent upstream, already percent-encoded (`/model/x-v1%3A0/invoke`).
    /// Never decode it before signing: AWS signs what is on the wire.
    pub path: &'a str,
    /// The raw query string, without the `?`; `None` or empty when there is none.
    pub query: Option<&'a str>,
    /// Further headers to sign, as they will be sent (see [`headers_to_sign`]). Must not contain
    /// `host`, `authorization`, `x-amz-date`, `x-amz-security-token` or `x-amz-content-sha256`:
    /// those come from the other fields or from the signer.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body exactly as it will be sent (its SHA-256 is signed).
    pub body: &'a [u8],
    /// The AWS service name of the credential scope, e.g. `bedrock`.
    pub service: &'a str,
    /// The region of the credential scope, e.g. `us-east-1` (see [`AwsCredential::signing_region`]).
    pub region: &'a str,
    /// The signing time (`SystemTime::now()` outside tests; AWS allows five minutes of skew).
    pub time: SystemTime,
}

/// Services whose signing rules differ (S3 signs the path single-encoded and unnormalized, and
/// needs the `x-amz-content-sha256` header).
fn is_s3(service: &str) -> bool {
    matches!(
        service,
        "s3" | "s3-object-lambda" | "s3-outposts" | "s3express"
    )
}

fn scope_part_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Signs a request. Returns the headers to set on the upstream request, lowercase:
/// `x-amz-date`, `authorization`, then `x-amz-security-token` when the credential has a session
/// token (and `x-amz-content-sha256` for S3). Mark them sensitive; `host` and the
/// [`SignInput::headers`] must be sent exactly as given.
pub fn sign(input: &SignInput<'_>) -> Result<Vec<(&'static str, String)>, SigV4Error> {
    let invalid = |m: &str| SigV4Error::InvalidRequest(m.to_string());
    if input.host.is_empty()
        || !input
            .host
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'@')
    {
        return Err(invalid("the upstream host is not a valid Host header"));
    }
    if !input.path.starts_with('/') {
        return Err(invalid("the upstream path must start with `/`"));
    }
    if !scope_part_ok(input.service) || !scope_part_ok(input.region) {
        return Err(invalid(
            "the SigV4 service and region must be short names (letters, digits, `-`)",
        ));
    }
    if input.method.is_empty() || !input.method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(invalid("the HTTP method must be an uppercase token"));
    }
    for (name, _) in input.headers {
        let reserved = name.eq_ignore_ascii_case("host")
            || CLIENT_AUTH_HEADERS
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h));
        if reserved {
            return Err(SigV4Error::InvalidRequest(format!(
                "the header `{}` is set by the signer and must not be passed to it",
                name.to_ascii_lowercase()
            )));
        }
    }

    let cred = input.credential;
    let identity = Credentials::new(
        cred.access_key_id.clone(),
        cred.secret_access_key.expose().to_string(),
        cred.session_token.as_ref().map(|t| t.expose().to_string()),
        None,
        "latchkey",
    )
    .into();

    let mut settings = SigningSettings::default();
    if is_s3(input.service) {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    } else {
        // AWS canonicalizes the path by encoding the (already encoded) path once more, after
        // removing `.`/`..` segments; so do we.
        settings.percent_encoding_mode = PercentEncodingMode::Double;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Enabled;
        settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    }

    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(input.region)
        .name(input.service)
        .time(input.time)
        .settings(settings)
        .build()
        .map_err(|e| SigV4Error::Signing(e.to_string()))?
        .into();

    let uri = match input.query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{}?{q}", input.path),
        None => input.path.to_string(),
    };
    let headers = std::iter::once(("host", input.host)).chain(input.headers.iter().copied());
    let request = SignableRequest::new(input.method, uri, headers, SignableBody::Bytes(input.body))
        .map_err(|e| SigV4Error::Signing(e.to_string()))?;
    let (instructions, _signature) = aws_sign(request, &params)
        .map_err(|e| SigV4Error::Signing(e.to_string()))?
        .into_parts();
    let (headers, _) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name(), h.value().to_string()))
        .collect())
}

/// Picks the request headers to sign besides `host`: `content-type`, `content-encoding`,
/// `content-md5` and every `x-amz-*` / `x-amzn-*` header (Bedrock's `x-amzn-bedrock-*` options
/// among them), except [`CLIENT_AUTH_HEADERS`] and `x-amzn-trace-id` (which proxies may rewrite).
/// Values that are not visible ASCII are left unsigned. Other headers (`content-length`,
/// `user-agent`, `accept`, hop-by-hop headers) stay unsigned so Pingora may adjust them.
pub fn headers_to_sign(headers: &HeaderMap) -> Vec<(&str, &str)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            matches!(n, "content-type" | "content-encoding" | "content-md5")
                || ((n.starts_with("x-amz-") || n.starts_with("x-amzn-"))
                    && n != "x-amzn-trace-id"
                    && !CLIENT_AUTH_HEADERS.contains(&n))
        })
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect()
}

/// True when an `Authorization` value is a SigV4 signature (`AWS4-HMAC-SHA256 …`).
pub fn is_sigv4_authorization(authorization: &str) -> bool {
    authorization
        .trim_start()
        .strip_prefix(ALGORITHM)
        .is_some_and(|rest| rest.starts_with(' '))
}

/// The access key id of a SigV4 `Authorization` header, which a client of Latchkey sets to its
/// proxy key:
/// `AWS4-HMAC-SHA256 Credential=lk_…/20240101/us-east-1/bedrock/aws4_request, SignedHeaders=…, Signature=…`
/// gives `lk_…`. `None` unless the header is well formed (a credential scope of five parts ending
/// in `aws4_request`, non-empty `SignedHeaders` and `Signature`).
///
/// The signature is **not** verified, and cannot be: a proxy key has no secret behind it on the
/// client's side. Possession of the proxy key is the authentication, exactly as with a bearer
/// token, and Latchkey re-signs the request with the real credential.
pub fn proxy_key_from_sigv4(authorization: &str) -> Option<&str> {
    let rest = authorization
        .trim()
        .strip_prefix(ALGORITHM)?
        .strip_prefix(' ')?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let (signed_headers, signature) = (signed_headers?, signature?);
    if signed_headers.is_empty() || signature.is_empty() {
        return None;
    }
    let mut scope = credential?.split('/');
    let key = scope.next()?;
    let (date, region, service, terminator) =
        (scope.next()?, scope.next()?, scope.next()?, scope.next()?);
    let date_ok = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
    if key.is_empty()
        || !date_ok
        || region.is_empty()
        || service.is_empty()
        || terminator != "aws4_request"
        || scope.next().is_some()
    {
        return None;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    use std::time::{Duration, UNIX_EPOCH};

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// The session token of the suite's `post-sts-header-before` vector.
    const SUITE_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
    const BEDROCK_HOST: &str = "bedrock-runtime.us-east-1.amazonaws.com";
    const BEDROCK_BODY: &[u8] = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

    /// 2015-08-30T12:36:00Z, the AWS SigV4 test suite's date.
    fn suite_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn cred(token: Option<&str>) -> AwsCredential {
        AwsCredential {
            access_key_id: AKID.into(),
            secret_access_key: SecretString::new(SECRET.into()),
            session_token: token.map(|t| SecretString::new(t.into())),
            region: None,
        }
    }

    struct Req<'a> {
        method: &'a str,
        host: &'a str,
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a [(&'a str, &'a str)],
        body: &'a [u8],
        service: &'a str,
        region: &'a str,
    }

    fn suite(
        method: &'static str,
        path: &'static str,
        query: Option<&'static str>,
    ) -> Req<'static> {
        Req {
            method,
            host: "example.amazonaws.com",
            path,
            query,
            headers: &[],
            body: b"",
            service: "service",
            region: "us-east-1",
        }
    }

    fn signed(r: &Req<'_>, c: &AwsCredential) -> Vec<(&'static str, String)> {
        sign(&SignInput {
            credential: c,
            method: r.method,
            host: r.host,
            path: r.path,
            query: r.query,
            headers: r.headers,
            body: r.body,
            service: r.service,
            region: r.region,
            time: suite_time(),
        })
        .unwrap()
    }

    fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn suite_authz(signed_headers: &str, signature: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed_headers}, Signature={signature}")
    }

    // --- (1) The AWS SigV4 test suite (aws-sig-v4-test-suite, 2015-08-30 edition). ---

    #[test]
    fn suite_get_vanilla() {
        let h = signed(&suite("GET", "/", None), &cred(None));
        assert_eq!(
            header(&h, "authorization").unwrap(),
            suite_authz(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
        assert_eq!(header(&h, "x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(header(&h, "x-amz-security-token"), None);
        assert_eq!(header(&h, "x-amz-content-sha256"), None);
    }

    #[test]
    fn suite_post_vanilla() {
        let h = signed(&suite("POST", "/", None), &cred(None));
        assert_eq!(
            header(&h, "authorization").unwrap(),
            suite_authz(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    #[test]
    fn suite_post_x_www_form_urlencoded() {
        let mut r = suite("POST", "/", None);
        r.headers = &[("Content-Type", "application/x-www-form-urlencoded")];
        r.body = b"Param1=value1";
        let h = signed(&r, &cred(None));
        assert_eq!(
            header(&h, "authorization").unwrap(),
            suite_authz(
                "content-type;host;x-amz-date",
                "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }

    #[test]
    fn suite_query_order_unreserved_path_and_relative_path() {
        let h = signed(
            &suite("GET", "/", Some("Param2=value2&Param1=value1")),
            &cred(None),
        );
        assert_eq!(
            header(&h, "authorization").unwrap(),
            suite_authz(
                "host;x-amz-date",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
        // get-unreserved: a path of every unreserved character.
        let path = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let h = signed(&suite("GET", path, None), &cred(None));
        assert_eq!(
            header(&h, "authorization").unwrap(),
            suite_authz(
                "host;x-amz-date",
                "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"
            )
        );
        // get-relative-relative: dot segments are removed before signing (non-S3 services).
        let h = signed(&suite("GET", "/example1/example2/../..", None), &cred(None));
        assert_eq!(
            header(&h, "authorization").unwrap(),
            suite_authz(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    // --- (3) Session token. ---

    #[test]
    fn suite_post_sts_header_before_signs_the_session_token() {
        let h = signed(&suite("POST", "/", None), &cred(Some(SUITE_TOKEN)));
        assert_eq!(
            header(&h, "authorization").unwrap(),
            suite_authz(
                "host;x-amz-date;x-amz-security-token",
                "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
            )
        );
        assert_eq!(header(&h, "x-amz-security-token"), Some(SUITE_TOKEN));
    }

    // --- (2) Bedrock, cross-checked two ways. ---

    /// An independent SigV4 implementation (hmac + sha2, nothing shared with aws-sigv4), used to
    /// check the Bedrock signatures from first principles.
    fn reference_signature(canonical_request: &str, service: &str, region: &str) -> String {
        fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
            let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
            m.update(msg.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/{region}/{service}/aws4_request\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let k = hmac(format!("AWS4{SECRET}").as_bytes(), "20150830");
        let k = hmac(&k, region);
        let k = hmac(&k, service);
        let k = hmac(&k, "aws4_request");
        hex(&hmac(&k, &string_to_sign))
    }

    fn sha256_hex(b: &[u8]) -> String {
        Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    }

    fn bedrock(path: &'static str) -> Req<'static> {
        Req {
            method: "POST",
            host: BEDROCK_HOST,
            path,
            query: None,
            headers: &[("content-type", "application/json")],
            body: BEDROCK_BODY,
            service: "bedrock",
            region: "us-east-1",
        }
    }

    #[test]
    fn bedrock_invoke_double_encodes_the_model_id_colon() {
        let path = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke";
        let h = signed(&bedrock(path), &cred(None));
        // The canonical request AWS computes: the path's `%3A` is encoded again as `%253A`, and
        // the body's SHA-256 closes it.
        let canonical = format!(
            "POST\n/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/invoke\n\n\
             content-type:application/json\nhost:{BEDROCK_HOST}\nx-amz-date:20150830T123600Z\n\n\
             content-type;host;x-amz-date\n{}",
            sha256_hex(BEDROCK_BODY)
        );
        let expected = reference_signature(&canonical, "bedrock", "us-east-1");
        assert_eq!(
            header(&h, "authorization").unwrap(),
            format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={expected}")
        );
        // Bedrock, like boto3, gets no x-amz-content-sha256 header (the hash is still signed).
        assert_eq!(header(&h, "x-amz-content-sha256"), None);
        // A different body is a different signature.
        let mut r = bedrock(path);
        r.body = b"{}";
        assert_ne!(
            header(&signed(&r, &cred(None)), "authorization"),
            header(&h, "authorization")
        );
    }

    /// Expected values produced by botocore 1.44.5's `SigV4Auth` in a one-off script:
    /// `AWSRequest(method="POST", url="https://bedrock-runtime.us-east-1.amazonaws.com" + path,
    /// headers={"Content-Type": "application/json", "Accept": "application/json"},
    /// data=BEDROCK_BODY)`, credentials AKIDEXAMPLE / the suite secret, service `bedrock`,
    /// region `us-east-1`, with `botocore.auth.get_current_datetime` patched to
    /// 2015-08-30T12:36:00Z.
    #[test]
    fn bedrock_matches_botocore() {
        let headers: &[(&str, &str)] = &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ];
        let cases = [
            (
                "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke",
                "f2001b07ab5ef007719c24fd395fbf750d648190507bef95fe4e594e2d67e938",
            ),
            (
                // An inference-profile ARN as the model id: `:` and `/` both percent-encoded.
                "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
                "d080226f1248ac2cf2ad1bdc8130b11ef9fa406602131f347ec5a4ff9c7d12ff",
            ),
        ];
        for (path, signature) in cases {
            let mut r = bedrock(path);
            r.headers = headers;
            let h = signed(&r, &cred(None));
            assert_eq!(
                header(&h, "authorization").unwrap(),
                format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=accept;content-type;host;x-amz-date, Signature={signature}"),
                "{path}"
            );
        }

        // With a session token (botocore: same request, Accept omitted, token FQoGZXIvYXdzEXAMPLETOKEN).
        let h = signed(
            &bedrock("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke"),
            &cred(Some("FQoGZXIvYXdzEXAMPLETOKEN")),
        );
        assert_eq!(
            header(&h, "authorization").unwrap(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=5db4542fbeca81a71de9893d042ac26d53693a97938170a6d997c5a551cfdeda"
        );
        assert_eq!(
            header(&h, "x-amz-security-token"),
            Some("FQoGZXIvYXdzEXAMPLETOKEN")
        );

        // A host with a non-default port (a local mock) is signed with its port
        // (botocore: url http://127.0.0.1:9999/model/m%3A0/converse, region us-west-2).
        let mut r = bedrock("/model/m%3A0/converse");
        r.host = "127.0.0.1:9999";
        r.region = "us-west-2";
        let h = signed(&r, &cred(None));
        assert_eq!(
            header(&h, "authorization").unwrap(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-west-2/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=0d00b966c45ecced49fb6698af332b34cc28b9e1d7cf8e58d60cefab3903b251"
        );
    }

    #[test]
    fn s3_signs_single_encoded_with_payload_header() {
        let mut r = bedrock("/bucket/a%3Ab/../c");
        r.service = "s3";
        r.headers = &[];
        let h = signed(&r, &cred(None));
        let payload = sha256_hex(BEDROCK_BODY);
        assert_eq!(header(&h, "x-amz-content-sha256"), Some(payload.as_str()));
        let canonical = format!(
            "POST\n/bucket/a%3Ab/../c\n\nhost:{BEDROCK_HOST}\nx-amz-content-sha256:{payload}\n\
             x-amz-date:20150830T123600Z\n\nhost;x-amz-content-sha256;x-amz-date\n{payload}"
        );
        let expected = reference_signature(&canonical, "s3", "us-east-1");
        assert!(header(&h, "authorization")
            .unwrap()
            .ends_with(&format!("Signature={expected}")));
    }

    #[test]
    fn sign_rejects_reserved_headers_and_bad_input() {
        let c = cred(None);
        let base = SignInput {
            credential: &c,
            method: "POST",
            host: BEDROCK_HOST,
            path: "/model/x/invoke",
            query: None,
            headers: &[],
            body: b"",
            service: "bedrock",
            region: "us-east-1",
            time: suite_time(),
        };
        assert!(sign(&base).is_ok());
        for h in [
            "Authorization",
            "x-amz-date",
            "X-Amz-Security-Token",
            "host",
        ] {
            let headers = [(h, "x")];
            let e = sign(&SignInput {
                headers: &headers,
                ..base
            })
            .unwrap_err();
            assert!(matches!(e, SigV4Error::InvalidRequest(_)), "{h}: {e}");
        }
        assert!(sign(&SignInput {
            path: "model/x",
            ..base
        })
        .is_err());
        assert!(sign(&SignInput { host: "", ..base }).is_err());
        assert!(sign(&SignInput {
            region: "us east",
            ..base
        })
        .is_err());
        let e = sign(&SignInput {
            headers: &[("x-custom", "bad\u{1}value")],
            ..base
        })
        .unwrap_err();
        assert!(matches!(e, SigV4Error::Signing(_)));
        let g: GatewayError = e.into();
        assert_eq!(g.status, 500);
    }

    #[test]
    fn picks_the_headers_to_sign() {
        let mut m = HeaderMap::new();
        for (k, v) in [
            ("content-type", "application/json"),
            ("content-length", "12"),
            ("user-agent", "boto3"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=lk_x/…"),
            ("x-amz-date", "20240101T000000Z"),
            ("x-amz-security-token", "client-token"),
            ("x-amz-content-sha256", "abc"),
            ("x-amzn-trace-id", "Root=1"),
            ("x-amzn-bedrock-trace", "ENABLED"),
            ("x-amz-user-agent", "aws-sdk"),
        ] {
            m.insert(k, v.parse().unwrap());
        }
        let mut got = headers_to_sign(&m);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("content-type", "application/json"),
                ("x-amz-user-agent", "aws-sdk"),
                ("x-amzn-bedrock-trace", "ENABLED"),
            ]
        );
    }

    // --- (4) The proxy key inside a client's SigV4 signature. ---

    #[test]
    fn proxy_key_from_a_client_signature() {
        let h = "AWS4-HMAC-SHA256 Credential=lk_3xYz/20240101/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=0123abcd";
        assert!(is_sigv4_authorization(h));
        assert_eq!(proxy_key_from_sigv4(h), Some("lk_3xYz"));
        // No spaces after the commas, and fields in another order.
        let h = "AWS4-HMAC-SHA256 Signature=ab,SignedHeaders=host,Credential=lk_a/20240101/eu-west-1/s3/aws4_request";
        assert_eq!(proxy_key_from_sigv4(h), Some("lk_a"));
        // A real AWS key id is returned too: it then fails as an invalid proxy key.
        let h = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa0";
        assert_eq!(proxy_key_from_sigv4(h), Some("AKIDEXAMPLE"));
    }

    #[test]
    fn malformed_client_signatures_yield_no_key() {
        let ok_tail = "SignedHeaders=host, Signature=ab";
        for h in [
            "",
            "Bearer lk_abc",
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 ",
            "AWS4-HMAC-SHA256Credential=lk_a/20240101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=ab",
            "AWS4-ECDSA-P256-SHA256 Credential=lk_a/20240101/bedrock/aws4_request, SignedHeaders=host, Signature=ab",
            &format!("AWS4-HMAC-SHA256 Credential=/20240101/us-east-1/bedrock/aws4_request, {ok_tail}"),
            &format!("AWS4-HMAC-SHA256 Credential=lk_a, {ok_tail}"),
            &format!("AWS4-HMAC-SHA256 Credential=lk_a/20240101/us-east-1/bedrock, {ok_tail}"),
            &format!("AWS4-HMAC-SHA256 Credential=lk_a/2024/us-east-1/bedrock/aws4_request, {ok_tail}"),
            &format!("AWS4-HMAC-SHA256 Credential=lk_a/20240101/us-east-1/bedrock/aws4_request/x, {ok_tail}"),
            &format!("AWS4-HMAC-SHA256 Credential=lk_a/20240101//bedrock/aws4_request, {ok_tail}"),
            &format!("AWS4-HMAC-SHA256 Credential=lk_a/20240101/us-east-1/bedrock/aws5_request, {ok_tail}"),
            "AWS4-HMAC-SHA256 Credential=lk_a/20240101/us-east-1/bedrock/aws4_request, Signature=ab",
            "AWS4-HMAC-SHA256 Credential=lk_a/20240101/us-east-1/bedrock/aws4_request, SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=lk_a/20240101/us-east-1/bedrock/aws4_request, SignedHeaders=, Signature=ab",
            "AWS4-HMAC-SHA256 Credential=lk_a/20240101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=ab, Extra=1",
            "AWS4-HMAC-SHA256 Credential=lk_a/20240101/us-east-1/bedrock/aws4_request, Credential=lk_b/20240101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=ab",
            "AWS4-HMAC-SHA256 Credential lk_a/20240101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=ab",
        ] {
            assert_eq!(proxy_key_from_sigv4(h), None, "{h:?}");
        }
        assert!(!is_sigv4_authorization("Bearer lk_x"));
        assert!(!is_sigv4_authorization("AWS4-HMAC-SHA256X"));
    }

    // --- (5) The credential JSON. ---

    #[test]
    fn parses_credential_json() {
        let c = AwsCredential::parse(
            r#"{"access_key_id":"AKIAIOSFODNN7EXAMPLE","secret_access_key":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY","region":"eu-central-1"}"#,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(
            c.secret_access_key.expose(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        );
        assert_eq!(c.session_token, None);
        assert_eq!(c.signing_region("us-east-1"), "eu-central-1");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("wJalr") && !dbg.contains("IOSFODNN"), "{dbg}");

        // Session token, no region, null and empty optional fields.
        let c = AwsCredential::parse(
            r#"{"access_key_id":"ASIAX","secret_access_key":"s","session_token":"tok/+=","region":null}"#,
        )
        .unwrap();
        assert_eq!(c.session_token.as_ref().unwrap().expose(), "tok/+=");
        assert_eq!(c.signing_region("us-east-1"), "us-east-1");
        let c = AwsCredential::parse(
            r#"{"access_key_id":"ASIAX","secret_access_key":"s","session_token":"","region":""}"#,
        )
        .unwrap();
        assert_eq!((c.session_token, c.region), (None, None));

        // The AWS CLI's `export-credentials --format process` output.
        let c = AwsCredential::parse(
            r#"{"Version":1,"AccessKeyId":"ASIAY","SecretAccessKey":"s2","SessionToken":"t2","Expiration":"2030-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "ASIAY");
        assert_eq!(c.session_token.unwrap().expose(), "t2");
    }

    #[test]
    fn credential_errors_never_echo_the_secret() {
        const S: &str = "Zq8SECRETvalue/abc+def";
        let cases = [
            // Not JSON at all: a pasted raw secret.
            S.to_string(),
            format!("{{\"access_key_id\":\"AKIA1\",\"secret_access_key\":\"{S}\""),
            format!("[\"{S}\"]"),
            format!("\"{S}\""),
            format!("{{\"secret_access_key\":\"{S}\"}}"),
            format!("{{\"access_key_id\":\"\",\"secret_access_key\":\"{S}\"}}"),
            format!("{{\"access_key_id\":\"AKIA-1\",\"secret_access_key\":\"{S}\"}}"),
            format!("{{\"access_key_id\":\"lk_abc\",\"secret_access_key\":\"{S}\"}}"),
            r#"{"access_key_id":"AKIA1"}"#.to_string(),
            r#"{"access_key_id":"AKIA1","secret_access_key":""}"#.to_string(),
            format!("{{\"access_key_id\":\"AKIA1\",\"secret_access_key\":\"{S} \"}}"),
            format!("{{\"access_key_id\":\"AKIA1\",\"secret_access_key\":[\"{S}\"]}}"),
            format!("{{\"access_key_id\":\"AKIA1\",\"secret_access_key\":\"x\",\"session_token\":\"{S}\\n\"}}"),
            r#"{"access_key_id":"AKIA1","secret_access_key":"x","session_token":5}"#.to_string(),
            format!("{{\"access_key_id\":\"AKIA1\",\"secret_access_key\":\"{S}\",\"region\":\"Not A Region\"}}"),
            format!("{{\"access_key_id\":\"AKIA1\",\"secret_access_key\":\"{S}\",\"SecretAccessKey\":\"{S}\"}}"),
            // A secret pasted as a field name.
            format!("{{\"access_key_id\":\"AKIA1\",\"secret_access_key\":\"x\",\"{S}\":1}}"),
        ];
        for input in cases {
            let e = AwsCredential::parse(&input).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, SigV4Error::InvalidCredential(_)));
            assert!(!msg.contains("SECRET"), "{input} -> {msg}");
            assert!(!format!("{e:?}").contains("SECRET"), "{input} -> {e:?}");
        }
        let e = AwsCredential::parse(
            r#"{"access_key_id":"A","secret_access_key":"x","regoin":"us-east-1"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("`regoin`"), "{e}");
    }

    #[test]
    fn regions_and_regional_hosts() {
        for r in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "cn-north-1",
            "ap-southeast-5",
        ] {
            assert!(valid_region(r), "{r}");
        }
        for r in [
            "",
            "US-EAST-1",
            "us east 1",
            "us-east-",
            "-us",
            "us--east-1",
            "1us",
        ] {
            assert!(!valid_region(r), "{r}");
        }
        assert_eq!(
            regional_host(BEDROCK_HOST, "us-east-1", "eu-central-1").as_deref(),
            Some("bedrock-runtime.eu-central-1.amazonaws.com")
        );
        assert_eq!(regional_host(BEDROCK_HOST, "us-east-1", "us-east-1"), None);
        assert_eq!(regional_host("127.0.0.1", "us-east-1", "eu-west-1"), None);
        assert_eq!(
            regional_host(
                "bedrock-runtime.us-west-2.amazonaws.com",
                "us-east-1",
                "eu-west-1"
            ),
            None
        );
        assert_eq!(regional_host(BEDROCK_HOST, "us-east-1", "../x"), None);
    }
}
