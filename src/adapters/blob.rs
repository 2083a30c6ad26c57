//! Azure Blob Storage as the audit archive (`service::audit_chain::AuditArchive`): one block
//! blob per sealed day, written with `If-None-Match: *` so an existing blob is never
//! overwritten, into a container that `infra/` protects with a time-based immutability policy.
//!
//! Requests go through the shared Azure plumbing (`adapters::azure`): Entra tokens for
//! `https://storage.azure.com/.default` in Azure, SharedKey (the Blob/Queue string-to-sign) for
//! Azurite and connection strings. Put Blob, Get Blob and Create Container as in the Blob service
//! REST reference, version 2021-12-02.
//!
//! Must never delete or overwrite a blob, and never log a key, a token or a blob's content.

use async_trait::async_trait;
use azure_core::http::{Method, Url};

use crate::adapters::azure::shared_key::Service;
use crate::adapters::azure::{AzureClient, AzureError, Outgoing, Reply};
use crate::service::audit_chain::{ArchiveError, Archived, AuditArchive};

/// The Blob service REST version sent.
pub const VERSION: &str = "2021-12-02";
const CONTENT_TYPE: &str = "application/x-ndjson";

/// One container of one storage account.
pub struct BlobArchive {
    client: AzureClient,
    /// `{endpoint}/{container}`, no trailing slash.
    container_url: String,
}

/// A container name as the Blob service takes it: 3 to 63 of `a-z`, `0-9` and `-`, starting
/// and ending with a letter or digit, no `--`.
pub fn check_container_name(name: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a blob container name (3 to 63 of a-z, 0-9 and single `-` inside)"))
    }
}

fn azure(e: AzureError) -> ArchiveError {
    match e {
        AzureError::Transient(m) => ArchiveError::Unavailable(m),
        AzureError::Setup(m) => ArchiveError::Refused(m),
    }
}

/// The service's error code (`x-ms-error-code`), never the body: an authentication failure's
/// details echo the string the service signed.
fn failure(reply: &Reply, what: &str) -> ArchiveError {
    let code = reply.header("x-ms-error-code").unwrap_or_default();
    let message = format!("{what}: HTTP {} {code}", reply.status).trim_end().to_owned();
    match reply.status {
        408 | 429 | 500..=599 => ArchiveError::Unavailable(message),
        _ => ArchiveError::Refused(message),
    }
}

impl BlobArchive {
    /// `endpoint`: the Blob service, `https://acct.blob.core.windows.net` or Azurite's path-style
    /// `http://127.0.0.1:10000/devstoreaccount1`. A SharedKey signer is switched to the Blob
    /// service's string-to-sign.
    pub fn new(client: AzureClient, endpoint: &str, container: &str) -> Result<Self, String> {
        check_container_name(container)?;
        let url = Url::parse(endpoint).map_err(|e| format!("blob endpoint: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.fragment().is_some() {
            let shown = format!("{}{}", url.origin().ascii_serialization(), url.path());
            return Err(format!("blob endpoint `{shown}…`: takes an http(s) URL without a query"));
        }
        Ok(Self {
            client: client.for_storage(Service::Queue),
            container_url: format!("{}/{container}", endpoint.trim_end_matches('/')),
        })
    }

    fn url(&self, name: &str, query: &str) -> Result<Url, ArchiveError> {
        if name.split('/').any(|part| part.is_empty() || part == "." || part == "..")
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
        {
            return Err(ArchiveError::Refused(format!("`{name}` is not a blob name this archive writes")));
        }
        let mut url = Url::parse(&format!("{}/{name}", self.container_url))
            .map_err(|e| ArchiveError::Refused(format!("cannot form a blob URL: {e}")))?;
        if !query.is_empty() {
            url.set_query(Some(query));
        }
        Ok(url)
    }

    fn container(&self) -> Result<Url, ArchiveError> {
        let mut url = Url::parse(&self.container_url)
            .map_err(|e| ArchiveError::Refused(format!("cannot form the container URL: {e}")))?;
        url.set_query(Some("restype=container"));
        Ok(url)
    }

    async fn call(
        &self,
        method: Method,
        url: &Url,
        headers: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
        what: &str,
    ) -> Result<Reply, ArchiveError> {
        let mut all = vec![("x-ms-version", VERSION.to_owned())];
        all.extend(headers);
        let outgoing = Outgoing {
            method,
            url,
            headers: all,
            body: body.map(|bytes| (CONTENT_TYPE.to_owned(), bytes)),
            accept: "*/*",
        };
        self.client.send_request(&outgoing, what).await.map_err(azure)
    }

    /// Creates the container unless it exists (Azurite and tests; in Azure `infra/` creates it
    /// with its immutability policy, and the app's identity may not create containers).
    pub async fn ensure_container(&self) -> Result<(), ArchiveError> {
        let reply = self.call(Method::Put, &self.container()?, Vec::new(), None, "create container").await?;
        match reply.status {
            201 => Ok(()),
            409 if reply.header("x-ms-error-code") == Some("ContainerAlreadyExists") => Ok(()),
            _ => Err(failure(&reply, "create container")),
        }
    }

    /// The blob's bytes, if it exists.
    pub async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        let reply = self.call(Method::Get, &self.url(name, "")?, Vec::new(), None, "get blob").await?;
        match reply.status {
            200 => Ok(Some(reply.body)),
            404 if reply.header("x-ms-error-code") == Some("BlobNotFound") => Ok(None),
            _ => Err(failure(&reply, "get blob")),
        }
    }
}

#[async_trait]
impl AuditArchive for BlobArchive {
    async fn put_once(&self, name: &str, body: &[u8]) -> Result<Archived, ArchiveError> {
        let url = self.url(name, "")?;
        let headers = vec![("x-ms-blob-type", "BlockBlob".to_owned()), ("if-none-match", "*".to_owned())];
        // Safe to retry: a repeat of a write that landed finds the blob and compares it.
        let reply = self.call(Method::Put, &url, headers, Some(body.to_vec()), "put blob").await?;
        match reply.status {
            201 => Ok(Archived::Created),
            // `If-None-Match: *` on an existing blob: 409 BlobAlreadyExists (412 from some
            // versions); an immutable blob refuses with 409 too.
            409 | 412 => match self.get(name).await? {
                Some(existing) => Ok(Archived::AlreadyThere { same: existing == body }),
                None => Err(failure(&reply, "put blob")),
            },
            _ => Err(failure(&reply, "put blob")),
        }
    }

    fn describe(&self) -> String {
        self.container_url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_the_blob_service_rules() {
        for good in ["audit", "elevate-audit", "a1b", &"a".repeat(63)] {
            check_container_name(good).unwrap();
        }
        for bad in ["", "ab", "Audit", "-audit", "audit-", "au--dit", "au_dit", &"a".repeat(64)] {
            assert!(check_container_name(bad).is_err(), "{bad}");
        }
    }
}
