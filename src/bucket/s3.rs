//! Talking to an S3-compatible bucket: rusty-s3 signs each request as a
//! presigned URL (it does no I/O), ureq sends it on the calling thread.
//!
//! Every request is retried a few times on what is worth retrying (no
//! connection, a timeout, 5xx, 429), and every failure becomes one line
//! naming the remote, the endpoint, the operation and the key, with what
//! the store said (its XML `Code` and `Message`), never a credential.

use std::io::Read;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::config::RemoteConfig;
use crate::error::{Error, Result};

/// How long a URL signed for one request stays valid.
const SIGN_FOR: Duration = Duration::from_secs(15 * 60);
/// Attempts for one request (the first and the retries).
const ATTEMPTS: u32 = 4;
/// Largest metadata object read into memory (a manifest, an index).
pub const MAX_SMALL: u64 = 256 << 20;

/// One configured remote, ready to use.
#[derive(Clone)]
pub struct Remote {
    pub name: String,
    bucket: Bucket,
    prefix: String,
    creds: Option<Credentials>,
    agent: ureq::Agent,
    /// `s3://bucket/prefix at endpoint`, for messages.
    pub describe: String,
    creds_source: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.describe)
    }
}

/// One object of a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The key below the remote's prefix.
    pub key: String,
    pub size: u64,
    /// RFC 3339, as the store reports it.
    pub modified: Option<String>,
}

/// The HTTP agent every request of slipway's goes through: a connect
/// timeout, a read timeout, statuses as values.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .timeout_per_write(Some(Duration::from_secs(60)))
        .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

impl Remote {
    /// Resolve `[remotes.NAME]` with the environment and the AWS files.
    ///
    /// # Errors
    /// Usage error for a bad `url` or `endpoint`, or unreadable AWS files.
    pub fn open(name: &str, cfg: &RemoteConfig, aws: &super::aws::Aws) -> Result<Remote> {
        let bad = |why: String| Error::usage(format!("remote `{name}`: {why}"));
        let rest = cfg
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| bad(format!("url `{}` does not start with `s3://`", cfg.url)))?;
        let (bucket_name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket_name.is_empty() {
            return Err(bad(format!("url `{}` names no bucket", cfg.url)));
        }
        let prefix = prefix.trim_matches('/');
        let region = cfg
            .region
            .clone()
            .or_else(|| aws.region.clone())
            .unwrap_or_else(|| "us-east-1".to_string());
        // As the AWS CLI: the environment's endpoint wins over a config
        // file's (slipway.toml's, then the profile's, which `aws` merged).
        let custom = aws
            .env_endpoint
            .clone()
            .or_else(|| cfg.endpoint.clone())
            .or_else(|| aws.endpoint.clone());
        let endpoint = custom
            .clone()
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let url: url::Url = endpoint
            .parse()
            .map_err(|e| bad(format!("endpoint `{endpoint}` is not a URL: {e}")))?;
        let style = if cfg.path_style.unwrap_or(custom.is_some()) {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(url, style, bucket_name.to_string(), region)
            .map_err(|e| bad(format!("endpoint `{endpoint}` with bucket `{bucket_name}`: {e}")))?;
        let creds = aws.credentials.as_ref().map(|k| match &k.token {
            Some(t) => Credentials::new_with_token(k.access_key.clone(), k.secret_key.clone(), t.clone()),
            None => Credentials::new(k.access_key.clone(), k.secret_key.clone()),
        });
        Ok(Remote {
            name: name.to_string(),
            bucket,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            creds,
            agent: agent(),
            describe: format!("{} at {endpoint}", cfg.url),
            creds_source: aws.source.clone(),
        })
    }

    /// The bucket's key for `key` (the remote's prefix in front), as
    /// messages name it.
    pub fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A presigned GET of `key`, valid for `valid`.
    pub fn presign_get(&self, key: &str, valid: Duration) -> String {
        let full = self.full(key);
        self.bucket
            .get_object(self.creds.as_ref(), &full)
            .sign(valid)
            .to_string()
    }

    fn fail(&self, op: &str, key: &str, why: impl std::fmt::Display) -> Error {
        Error::Remote(format!(
            "remote `{}` ({}): {op} `{}`: {why}",
            self.name,
            self.describe,
            self.full(key)
        ))
    }

    /// Send one request (retrying what is worth retrying) and return the
    /// response when its status is one of `ok`; `Ok(None)` on 404 when
    /// `missing_ok`.
    fn request(
        &self,
        op: &str,
        key: &str,
        ok: &[u16],
        missing_ok: bool,
        mut make: impl FnMut() -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Option<ureq::http::Response<ureq::Body>>> {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 << attempt));
            }
            match make() {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    if ok.contains(&status) {
                        return Ok(Some(resp));
                    }
                    if status == 404 && missing_ok {
                        return Ok(None);
                    }
                    let body = resp
                        .body_mut()
                        .with_config()
                        .limit(64 * 1024)
                        .read_to_string()
                        .unwrap_or_default();
                    let said = s3_error(&body);
                    if status >= 500 || status == 429 {
                        last = format!("the store answered {status}{said}");
                        continue;
                    }
                    let hint = match status {
                        403 => format!(
                            "; check the credentials ({}) and that they may use this bucket",
                            self.creds_source
                        ),
                        404 => " (missing)".to_string(),
                        _ => String::new(),
                    };
                    return Err(self.fail(op, key, format!("the store answered {status}{said}{hint}")));
                }
                Err(e) => {
                    last = describe_http(&e);
                }
            }
        }
        Err(self.fail(op, key, format!("{last} (tried {ATTEMPTS} times)")))
    }

    /// The whole object, `None` when it does not exist.
    ///
    /// # Errors
    /// A refused or failed request, or an object larger than `limit`.
    pub fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let full = self.full(key);
        let url = self.bucket.get_object(self.creds.as_ref(), &full).sign(SIGN_FOR);
        let Some(mut resp) = self.request("GET", key, &[200], true, || self.agent.get(url.as_str()).call())? else {
            return Ok(None);
        };
        read_limited(&mut resp, limit)
            .map(Some)
            .map_err(|e| self.fail("GET", key, e))
    }

    /// `len` bytes at `offset` of the object.
    ///
    /// # Errors
    /// A refused or failed request, a missing object, a short answer.
    pub fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        get_range_url(
            &self.agent,
            &self
                .bucket
                .get_object(self.creds.as_ref(), &self.full(key))
                .sign(SIGN_FOR),
            offset,
            len,
        )
        .map_err(|why| self.fail("GET", key, why))
    }

    /// Does the object exist?
    ///
    /// # Errors
    /// A refused or failed request.
    pub fn exists(&self, key: &str) -> Result<bool> {
        let full = self.full(key);
        let url = self.bucket.head_object(self.creds.as_ref(), &full).sign(SIGN_FOR);
        Ok(self
            .request("HEAD", key, &[200], true, || self.agent.head(url.as_str()).call())?
            .is_some())
    }

    /// Write the object (replacing it where the store allows).
    ///
    /// # Errors
    /// A refused or failed request.
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let full = self.full(key);
        let url = self.bucket.put_object(self.creds.as_ref(), &full).sign(SIGN_FOR);
        self.request("PUT", key, &[200, 201, 204], false, || {
            self.agent
                .put(url.as_str())
                .header("content-type", "application/octet-stream")
                .send(bytes)
        })?;
        Ok(())
    }

    /// Write the object from the `size` bytes of the file at `path`,
    /// streamed (a pack is never held in memory whole).
    ///
    /// # Errors
    /// A refused or failed request, or an unreadable file.
    pub fn put_file(&self, key: &str, path: &std::path::Path, size: u64) -> Result<()> {
        let full = self.full(key);
        let url = self.bucket.put_object(self.creds.as_ref(), &full).sign(SIGN_FOR);
        self.request("PUT", key, &[200, 201, 204], false, || {
            let file = match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) => return Err(ureq::Error::Io(e)),
            };
            self.agent
                .put(url.as_str())
                .header("content-type", "application/octet-stream")
                .header("content-length", size.to_string())
                .send(ureq::SendBody::from_owned_reader(file))
        })?;
        Ok(())
    }

    /// Remove the object (a missing one is no error).
    ///
    /// # Errors
    /// A refused or failed request.
    pub fn delete(&self, key: &str) -> Result<()> {
        let full = self.full(key);
        let url = self.bucket.delete_object(self.creds.as_ref(), &full).sign(SIGN_FOR);
        self.request("DELETE", key, &[200, 204], true, || {
            self.agent.delete(url.as_str()).call()
        })?;
        Ok(())
    }

    /// Every object whose key starts with `prefix` (below the remote's own
    /// prefix), in key order.
    ///
    /// # Errors
    /// A refused or failed request, or a listing that does not parse.
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let full = self.full(prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(self.creds.as_ref());
            action.with_prefix(full.as_str());
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGN_FOR);
            let mut resp = self
                .request("LIST", prefix, &[200], false, || self.agent.get(url.as_str()).call())?
                .ok_or_else(|| self.fail("LIST", prefix, "no answer"))?;
            let body = read_limited(&mut resp, 64 << 20).map_err(|e| self.fail("LIST", prefix, e))?;
            let text = String::from_utf8_lossy(&body);
            let parsed = rusty_s3::actions::ListObjectsV2::parse_response(&text)
                .map_err(|e| self.fail("LIST", prefix, format!("cannot parse the listing: {e}")))?;
            for c in parsed.contents {
                if let Some(key) = c.key.strip_prefix(&self.prefix) {
                    out.push(Listed {
                        key: key.to_string(),
                        size: c.size.unwrap_or(0),
                        modified: c.last_modified,
                    });
                }
            }
            match parsed.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// GET `len` bytes at `offset` through a presigned URL (retried); an error
/// says why in words, for the caller to prefix.
///
/// # Errors
/// When the store refuses, the URL expired, or the answer is short.
pub fn get_range_url(
    agent: &ureq::Agent,
    url: &url::Url,
    offset: u64,
    len: u64,
) -> std::result::Result<Vec<u8>, String> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let range = format!("bytes={offset}-{}", offset + len - 1);
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200 << attempt));
        }
        match agent.get(url.as_str()).header("range", &range).call() {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                if status == 206 || (status == 200 && offset == 0) {
                    let mut body = read_limited(&mut resp, len.max(1) + if status == 200 { u64::MAX / 2 } else { 0 })?;
                    if status == 200 {
                        body.truncate(usize::try_from(len).unwrap_or(usize::MAX));
                    }
                    if body.len() as u64 != len {
                        last = format!("the store sent {} of {len} bytes", body.len());
                        continue;
                    }
                    return Ok(body);
                }
                let text = resp
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_string()
                    .unwrap_or_default();
                let said = s3_error(&text);
                if status >= 500 || status == 429 {
                    last = format!("the store answered {status}{said}");
                    continue;
                }
                return Err(format!("the store answered {status}{said}{}", url_hint(status, &text)));
            }
            Err(e) => last = describe_http(&e),
        }
    }
    Err(format!("{last} (tried {ATTEMPTS} times)"))
}

fn read_limited(resp: &mut ureq::http::Response<ureq::Body>, limit: u64) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("the answer broke off: {}", crate::error::describe_io(&e)))?;
    if out.len() as u64 > limit {
        return Err(format!("the object is larger than the limit of {limit} bytes"));
    }
    Ok(out)
}

/// What a refusal of a presigned URL most likely means, for a host's error
/// (stores say "expired" in different words: Garage answers 400 "Date is
/// too old", AWS 403 "Request has expired").
pub fn url_hint(status: u16, body: &str) -> &'static str {
    let b = body.to_ascii_lowercase();
    if b.contains("expired") || b.contains("too old") {
        "; the URL expired before this host used it: run the command again for fresh ones, or raise the remote's `url_lifetime`"
    } else if status == 403 {
        "; access denied: the URL expired, or the operator's credentials were revoked"
    } else if status == 404 {
        " (missing from the bucket)"
    } else {
        ""
    }
}

/// ` (Code: Message)` from an S3 error document, or nothing.
pub fn s3_error(body: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        let text = body[start..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        Some(crate::error::one_line(&text).into_owned())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!(" ({c}: {m})"),
        (Some(c), None) => format!(" ({c})"),
        _ => String::new(),
    }
}

fn describe_http(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => format!("cannot reach the endpoint: {}", crate::error::describe_io(io)),
        ureq::Error::HostNotFound => "cannot reach the endpoint: host not found".to_string(),
        ureq::Error::ConnectionFailed => "cannot reach the endpoint: connection failed".to_string(),
        ureq::Error::Timeout(t) => format!("the endpoint did not answer in time ({t})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_are_read_from_their_xml() {
        let body = "<?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code><Message>bad key\nx</Message></Error>";
        assert_eq!(s3_error(body), " (InvalidAccessKeyId: bad key\\nx)");
        assert_eq!(s3_error("<html>"), "");
    }

    #[test]
    fn urls_and_prefixes_are_checked() {
        let aws = crate::bucket::aws::Aws::default();
        let cfg = |url: &str| RemoteConfig {
            url: url.to_string(),
            endpoint: Some("http://127.0.0.1:3900".into()),
            ..RemoteConfig::default()
        };
        assert!(
            Remote::open("r", &cfg("http://x"), &aws)
                .unwrap_err()
                .to_string()
                .contains("s3://")
        );
        assert!(
            Remote::open("r", &cfg("s3:///p"), &aws)
                .unwrap_err()
                .to_string()
                .contains("no bucket")
        );
        let r = Remote::open("r", &cfg("s3://b/shop/"), &aws).unwrap();
        assert_eq!(r.full("names/x"), "shop/names/x");
        assert!(
            r.presign_get("k", SIGN_FOR)
                .starts_with("http://127.0.0.1:3900/b/shop/k")
        );
    }

    #[test]
    fn the_environment_endpoint_wins_over_slipway_toml_as_over_the_aws_config() {
        let cfg = RemoteConfig {
            url: "s3://b".into(),
            endpoint: Some("http://toml:1".into()),
            ..RemoteConfig::default()
        };
        let mut aws = crate::bucket::aws::Aws {
            endpoint: Some("http://profile:1".into()),
            ..Default::default()
        };
        assert!(
            Remote::open("r", &cfg, &aws)
                .unwrap()
                .describe
                .ends_with("http://toml:1")
        );
        aws.env_endpoint = Some("http://env:1".into());
        assert!(
            Remote::open("r", &cfg, &aws)
                .unwrap()
                .describe
                .ends_with("http://env:1")
        );
        let bare = RemoteConfig {
            url: "s3://b".into(),
            ..RemoteConfig::default()
        };
        aws.env_endpoint = None;
        assert!(
            Remote::open("r", &bare, &aws)
                .unwrap()
                .describe
                .ends_with("http://profile:1")
        );
    }
}
