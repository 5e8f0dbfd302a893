//! Where an S3 store is and how to reach it: `s3://BUCKET/PREFIX` and the
//! settings other S3 tools take from the environment.

use std::time::Duration;

use crate::StoreError;

/// How to reach an S3 bucket. The library never reads the environment: the
/// caller passes a lookup, normally `|k| std::env::var(k).ok()`, to
/// [`S3Config::from_url`].
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// Keys live under this prefix (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// `AWS_ENDPOINT_URL`: the server, for S3-compatible stores; `None` is
    /// AWS itself.
    pub endpoint: Option<String>,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`); `us-east-1` if unset.
    pub region: String,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<String>,
    /// Plain HTTP is allowed for a loopback endpoint, or everywhere with
    /// `AWS_ALLOW_HTTP=true`.
    pub allow_http: bool,
    /// How long one request is retried (with exponential backoff) on
    /// transient errors before it fails.
    pub retry_timeout: Duration,
}

impl std::fmt::Debug for S3Config {
    /// Never shows the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

/// The default for [`S3Config::retry_timeout`].
pub const RETRY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// Whether `endpoint` (a URL) names a loopback host.
pub fn is_loopback(endpoint: &str) -> bool {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Splits `s3://BUCKET/PREFIX` into the bucket and the prefix.
pub fn parse_url(url: &str) -> Result<(String, String), StoreError> {
    let bad = |why: &str| StoreError::RemoteConfig {
        what: format!("{url:?} is not an S3 location: {why}; write s3://BUCKET/PREFIX"),
    };
    let rest = url.strip_prefix("s3://").ok_or_else(|| bad("it does not start with s3://"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
    if !bucket_ok {
        return Err(bad("the bucket name must be 3 to 63 lower-case letters, digits, '-' or '.'"));
    }
    let prefix = prefix.trim_matches('/');
    let prefix_ok = prefix.split('/').all(|part| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    });
    if !prefix.is_empty() && !prefix_ok {
        return Err(bad("the prefix must be '/'-separated letters, digits, '-', '_' and '.'"));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

impl S3Config {
    /// The location `url` (`s3://BUCKET/PREFIX`), with the endpoint,
    /// region and credentials from `var` (the names other S3 tools read:
    /// `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_DEFAULT_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_ALLOW_HTTP`).
    pub fn from_url(url: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<Self, StoreError> {
        let (bucket, prefix) = parse_url(url)?;
        let set = |k: &str| var(k).filter(|v| !v.is_empty());
        let endpoint = set("AWS_ENDPOINT_URL").map(|e| e.trim_end_matches('/').to_owned());
        let allow_http = set("AWS_ALLOW_HTTP").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || endpoint.as_deref().is_some_and(is_loopback);
        if let Some(e) = &endpoint
            && e.starts_with("http://")
            && !allow_http
        {
            return Err(StoreError::RemoteConfig {
                what: format!(
                    "AWS_ENDPOINT_URL {e} is plain HTTP to a host that is not loopback; use https, or set AWS_ALLOW_HTTP=true if the network is trusted"
                ),
            });
        }
        Ok(Self {
            bucket,
            prefix,
            endpoint,
            region: set("AWS_REGION")
                .or_else(|| set("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".to_owned()),
            access_key_id: set("AWS_ACCESS_KEY_ID"),
            secret_access_key: set("AWS_SECRET_ACCESS_KEY"),
            session_token: set("AWS_SESSION_TOKEN"),
            allow_http,
            retry_timeout: RETRY_TIMEOUT_DEFAULT,
        })
    }

    /// `s3://BUCKET/PREFIX`, and the endpoint if not AWS: for messages.
    pub fn describe(&self) -> String {
        let url = if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        };
        match &self.endpoint {
            Some(e) => format!("{url} at {e}"),
            None => url,
        }
    }

    /// The object_store client for this bucket. Conditional writes use
    /// If-None-Match and If-Match on the ETag; whether the server honours
    /// them is probed before any ref is written (see `RemoteRefs`).
    /// [`Remote::s3`](super::Remote::s3) uses it; a caller that wraps the
    /// client (a test injecting faults) passes the wrapper to
    /// [`Remote::with_client`](super::Remote::with_client).
    pub fn build(&self) -> Result<object_store::aws::AmazonS3, StoreError> {
        use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
        use object_store::{BackoffConfig, ClientOptions, RetryConfig};
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 10,
            retry_timeout: self.retry_timeout,
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_allow_http(self.allow_http)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(retry)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(self.allow_http)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            );
        if let Some(e) = &self.endpoint {
            // S3-compatible servers usually serve path-style URLs only.
            builder = builder.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => {
                builder = builder.with_access_key_id(id).with_secret_access_key(secret);
                if let Some(token) = &self.session_token {
                    builder = builder.with_token(token);
                }
            }
            (None, None) => builder = builder.with_skip_signature(true),
            _ => {
                return Err(StoreError::RemoteConfig {
                    what: "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (anonymous access)".to_owned(),
                });
            }
        }
        builder.build().map_err(|e| StoreError::RemoteConfig {
            what: format!("cannot use {}: {e}", self.describe()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("s3://bkt/a/b/").unwrap(), ("bkt".into(), "a/b".into()));
        assert_eq!(parse_url("s3://bkt").unwrap(), ("bkt".into(), "".into()));
        for bad in ["http://bkt/x", "s3://B/x", "s3://bk", "s3://bkt/a//b", "s3://bkt/../x"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_only_for_loopback_unless_allowed() {
        let env = |endpoint: &'static str, allow: &'static str| {
            move |k: &str| match k {
                "AWS_ENDPOINT_URL" => Some(endpoint.to_owned()),
                "AWS_ALLOW_HTTP" => Some(allow.to_owned()),
                _ => None,
            }
        };
        for ok in ["http://127.0.0.1:9000", "http://localhost:9000/", "http://[::1]:80"] {
            let c = S3Config::from_url("s3://bkt/p", &env(ok, "")).unwrap();
            assert!(c.allow_http, "{ok}");
        }
        assert!(S3Config::from_url("s3://bkt/p", &env("http://10.0.0.1:9000", "")).is_err());
        assert!(S3Config::from_url("s3://bkt/p", &env("http://s3.lan:9000", "true")).is_ok());
        let c = S3Config::from_url("s3://bkt/p", &env("https://s3.example", "")).unwrap();
        assert!(!c.allow_http);
        assert_eq!(c.region, "us-east-1");
        assert!(!format!("{c:?}").contains("secret"));
    }
}
