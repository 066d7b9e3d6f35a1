//! Which endpoint a request is for.

/// The endpoints of the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET /healthz`.
    Health,
    /// `GET /readyz`.
    Ready,
    /// `/proxy/{provider}/{rest}`; `rest` keeps its leading `/` (just `/` when absent).
    Proxy {
        /// Provider namespace.
        provider: &'a str,
        /// Path after the provider, starting with `/`.
        rest: &'a str,
    },
    /// `/v1/{rest}`: the OpenAI-compatible endpoint; the provider comes from the model registry
    /// or the key. `rest` keeps its leading `/`.
    OpenAi {
        /// Path after `/v1`, starting with `/`.
        rest: &'a str,
    },
    /// Anything else.
    NotFound,
}

/// Classifies a request path (without query).
///
/// ```
/// use latchkey_gateway::route::{classify, Route};
/// assert_eq!(classify("/proxy/openai/v1/models"), Route::Proxy { provider: "openai", rest: "/v1/models" });
/// assert_eq!(classify("/healthz"), Route::Health);
/// assert_eq!(classify("/v1/chat/completions"), Route::OpenAi { rest: "/chat/completions" });
/// ```
pub fn classify(path: &str) -> Route<'_> {
    match path {
        "/healthz" => return Route::Health,
        "/readyz" => return Route::Ready,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/v1") {
        if rest.is_empty() || rest.starts_with('/') {
            return Route::OpenAi {
                rest: if rest.is_empty() { "/" } else { rest },
            };
        }
    }
    let Some(after) = path.strip_prefix("/proxy/") else {
        return Route::NotFound;
    };
    let (provider, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    if provider.is_empty() {
        return Route::NotFound;
    }
    Route::Proxy { provider, rest }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_paths() {
        assert_eq!(classify("/readyz"), Route::Ready);
        assert_eq!(
            classify("/proxy/stripe"),
            Route::Proxy {
                provider: "stripe",
                rest: "/"
            }
        );
        assert_eq!(
            classify("/proxy/x/a/b%2Fc"),
            Route::Proxy {
                provider: "x",
                rest: "/a/b%2Fc"
            }
        );
        assert_eq!(classify("/proxy/"), Route::NotFound);
        assert_eq!(classify("/proxy"), Route::NotFound);
        assert_eq!(classify("/v2/x"), Route::NotFound);
    }
}
