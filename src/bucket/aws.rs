//! Credentials, region and endpoint, read the way the AWS CLI reads them.
//!
//! ```text
//! credentials  AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN)
//!              else the profile (AWS_PROFILE, AWS_DEFAULT_PROFILE, `default`):
//!                AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials) [NAME],
//!                then AWS_CONFIG_FILE (~/.aws/config) [profile NAME] / [default]:
//!                aws_access_key_id, aws_secret_access_key, aws_session_token,
//!                or credential_process (its JSON answer)
//! region       [remotes.X] region, AWS_REGION, AWS_DEFAULT_REGION, the profile's region, us-east-1
//! endpoint     AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, [remotes.X] endpoint, the profile's endpoint_url
//! ```
//!
//! Invariant: a secret is never printed, logged or written anywhere; errors
//! name the variable or file a value came from, never the value.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// What the environment and the AWS files say.
#[derive(Debug, Clone, Default)]
pub struct Aws {
    pub credentials: Option<Keys>,
    pub region: Option<String>,
    /// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`: wins over `[remotes.X] endpoint`.
    pub env_endpoint: Option<String>,
    /// The profile's `endpoint_url`: loses to `[remotes.X] endpoint`.
    pub endpoint: Option<String>,
    /// Where the credentials came from (`environment`, `profile "ci" in ~/.aws/credentials`).
    pub source: String,
}

#[derive(Clone)]
pub struct Keys {
    pub access_key: String,
    pub secret_key: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({}, <secret>)", self.access_key)
    }
}

/// Read everything from the process environment and the files it names.
///
/// # Errors
/// When a file that is named exists but cannot be parsed, or a
/// `credential_process` fails.
pub fn from_env() -> Result<Aws> {
    resolve(&|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// [`from_env`] with the environment as a function (for tests).
///
/// # Errors
/// As [`from_env`].
pub fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<Aws> {
    let home = env("HOME").map(PathBuf::from);
    let in_home = |var: &str, rel: &str| {
        env(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(rel)))
    };
    let profile = env("AWS_PROFILE")
        .or_else(|| env("AWS_DEFAULT_PROFILE"))
        .unwrap_or_else(|| "default".to_string());
    let explicit_profile = env("AWS_PROFILE").is_some() || env("AWS_DEFAULT_PROFILE").is_some();
    let creds_file = in_home("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    let config_file = in_home("AWS_CONFIG_FILE", ".aws/config");
    let creds_section = read_section(creds_file.as_ref(), &profile, false)?;
    let config_section = read_section(config_file.as_ref(), &profile, true)?;
    let from_profile = |key: &str| -> Option<String> {
        creds_section
            .as_ref()
            .and_then(|s| s.get(key))
            .or_else(|| config_section.as_ref().and_then(|s| s.get(key)))
            .map(str::to_string)
            .filter(|v| !v.is_empty())
    };

    let mut aws = Aws {
        region: env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| from_profile("region")),
        env_endpoint: env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")),
        endpoint: from_profile("endpoint_url"),
        ..Aws::default()
    };
    if let (Some(access_key), Some(secret_key)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        aws.credentials = Some(Keys {
            access_key,
            secret_key,
            token: env("AWS_SESSION_TOKEN"),
        });
        aws.source = "from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_string();
        return Ok(aws);
    }
    let where_ = |file: &Option<PathBuf>| file.as_ref().map(|f| f.display().to_string()).unwrap_or_default();
    if let (Some(access_key), Some(secret_key)) =
        (from_profile("aws_access_key_id"), from_profile("aws_secret_access_key"))
    {
        aws.credentials = Some(Keys {
            access_key,
            secret_key,
            token: from_profile("aws_session_token"),
        });
        let file = if creds_section
            .as_ref()
            .is_some_and(|s| s.get("aws_access_key_id").is_some())
        {
            where_(&creds_file)
        } else {
            where_(&config_file)
        };
        aws.source = format!("from profile `{profile}` in {file}");
        return Ok(aws);
    }
    if let Some(command) = from_profile("credential_process") {
        aws.credentials = Some(credential_process(&command, &profile)?);
        aws.source = format!("from the credential_process of profile `{profile}`");
        return Ok(aws);
    }
    if explicit_profile && creds_section.is_none() && config_section.is_none() {
        return Err(Error::usage(format!(
            "AWS profile `{profile}` is not in {} nor in {}",
            where_(&creds_file),
            where_(&config_file)
        )));
    }
    aws.source = "none found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE".to_string();
    Ok(aws)
}

/// One profile's keys from an INI file (`config`: `[profile NAME]`, or
/// `[default]`; credentials file: `[NAME]`). `None` when the file or the
/// section is missing.
fn read_section(file: Option<&PathBuf>, profile: &str, config: bool) -> Result<Option<ini::Properties>> {
    let Some(path) = file else { return Ok(None) };
    let Some(bytes) = crate::fs::read_optional(path)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let parsed = ini::Ini::load_from_str_noescape(&text)
        .map_err(|e| Error::usage(format!("cannot parse AWS file `{}`: {e}", path.display())))?;
    let wanted = if config && profile != "default" {
        format!("profile {profile}")
    } else {
        profile.to_string()
    };
    Ok(parsed
        .iter()
        .find(|(name, _)| name.map(str::trim) == Some(wanted.as_str()))
        .map(|(_, props)| props.clone()))
}

/// Run a profile's `credential_process` (`sh -c`) and read its JSON answer.
fn credential_process(command: &str, profile: &str) -> Result<Keys> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::Run {
            program: "sh".to_string(),
            hint: "",
            source: e,
        })?;
    let fail = |why: &str| Error::other(format!("the credential_process of AWS profile `{profile}` {why}"));
    if !out.status.success() {
        return Err(fail(&format!("failed ({})", out.status)));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    }
    let a: Answer =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(&format!("printed no valid credentials JSON: {e}")))?;
    Ok(Keys {
        access_key: a.access_key_id,
        secret_key: a.secret_access_key,
        token: a.session_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn environment_keys_win_over_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = FILE\naws_secret_access_key = s\n",
        )
        .unwrap();
        let c = creds.to_str().unwrap();
        let aws = resolve(&with(&[
            ("AWS_SHARED_CREDENTIALS_FILE", c),
            ("AWS_ACCESS_KEY_ID", "ENV"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ]))
        .unwrap();
        assert_eq!(aws.credentials.unwrap().access_key, "ENV");
        let aws = resolve(&with(&[("AWS_SHARED_CREDENTIALS_FILE", c)])).unwrap();
        assert_eq!(aws.credentials.unwrap().access_key, "FILE");
    }

    #[test]
    fn a_named_profile_reads_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        let config = dir.path().join("config");
        std::fs::write(
            &creds,
            "[ci]\naws_access_key_id = CI\naws_secret_access_key = s\naws_session_token = t\n",
        )
        .unwrap();
        std::fs::write(
            &config,
            "[default]\nregion = eu-west-1\n[profile ci]\nregion = garage\nendpoint_url = http://127.0.0.1:3900\n",
        )
        .unwrap();
        let aws = resolve(&with(&[
            ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_PROFILE", "ci"),
        ]))
        .unwrap();
        let k = aws.credentials.unwrap();
        assert_eq!((k.access_key.as_str(), k.token.as_deref()), ("CI", Some("t")));
        assert_eq!(aws.region.as_deref(), Some("garage"));
        assert_eq!(aws.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        // The environment's region and endpoint win over the profile's.
        let aws = resolve(&with(&[
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_PROFILE", "ci"),
            ("AWS_REGION", "r"),
            ("AWS_ENDPOINT_URL", "http://e"),
        ]))
        .unwrap();
        assert_eq!(aws.region.as_deref(), Some("r"));
        assert_eq!(aws.env_endpoint.as_deref(), Some("http://e"));
    }

    #[test]
    fn a_missing_named_profile_is_an_error_and_no_profile_means_unsigned() {
        let dir = tempfile::tempdir().unwrap();
        let none = dir.path().join("none");
        let n = none.to_str().unwrap();
        let e = resolve(&with(&[
            ("AWS_PROFILE", "nope"),
            ("AWS_CONFIG_FILE", n),
            ("AWS_SHARED_CREDENTIALS_FILE", n),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("AWS profile `nope`"), "{e}");
        let aws = resolve(&with(&[("AWS_CONFIG_FILE", n), ("AWS_SHARED_CREDENTIALS_FILE", n)])).unwrap();
        assert!(aws.credentials.is_none());
    }

    #[test]
    fn credential_process_answers_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::write(
            &config,
            "[profile p]\ncredential_process = printf '{\"Version\":1,\"AccessKeyId\":\"P\",\"SecretAccessKey\":\"s\"}'\n",
        )
        .unwrap();
        let aws = resolve(&with(&[
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_PROFILE", "p"),
        ]))
        .unwrap();
        assert_eq!(aws.credentials.unwrap().access_key, "P");
    }
}
