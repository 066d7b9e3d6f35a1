//! Public prefixes: the leading bytes every key of a kind shares, which are not secret.

/// Fixed vendor key prefixes. The longest one a secret starts with is its public prefix.
const VENDOR_PREFIXES: &[&str] = &[
    // OpenAI
    "sk-proj-",
    "sk-svcacct-",
    "sk-admin-",
    "sk-",
    // Anthropic
    "sk-ant-api03-",
    "sk-ant-admin01-",
    "sk-ant-oat01-",
    "sk-ant-ort01-",
    // OpenRouter, xAI, Perplexity, Groq, Hugging Face, Replicate
    "sk-or-v1-",
    "xai-",
    "pplx-",
    "gsk_",
    "hf_",
    "r8_",
    // Stripe
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "whsec_",
    // GitHub, GitLab
    "github_pat_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "glpat-",
    // Slack
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxr-",
    "xoxs-",
    "xapp-",
    // Google, AWS
    "AIza",
    "ya29.",
    "AKIA",
    "ASIA",
    // SendGrid, npm, PyPI, DigitalOcean, Shopify, Linear
    "SG.",
    "npm_",
    "pypi-",
    "dop_v1_",
    "shpat_",
    "lin_api_",
];

/// Length of the public prefix of `secret`: the longest vendor prefix it starts with, or, for a
/// JWT (`eyJ…` with three dot-separated segments), everything up to and including the last dot.
/// A JWT's header is the same in every token of an issuer and its claims largely are; without
/// the signature the token is unusable, so only the signature counts towards a fragment.
/// 0 when the format is unknown.
pub(super) fn public_len(secret: &[u8]) -> usize {
    let vendor = VENDOR_PREFIXES
        .iter()
        .map(|p| p.as_bytes())
        .filter(|p| secret.starts_with(p))
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    vendor.max(jwt_signed_part_len(secret))
}

fn jwt_signed_part_len(secret: &[u8]) -> usize {
    if !secret.starts_with(b"eyJ") || secret.iter().filter(|&&b| b == b'.').count() != 2 {
        return 0;
    }
    secret
        .iter()
        .rposition(|&b| b == b'.')
        .map_or(0, |dot| dot + 1)
}
