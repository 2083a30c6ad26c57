//! A small Azure Table Storage REST client (azure-spec §5) over the shared azure_core pipeline:
//! point reads, inserts, conditional replaces and deletes, queries that follow continuation
//! headers, and entity group transactions. The official Rust SDK has no Tables crate; the old
//! `azure_data_tables` drags in a second, deprecated azure_core.
//!
//! Entities are flat maps of string (and boolean) properties, read with `odata=nometadata`: the
//! store keeps every typed value as a string it formats itself, so nothing depends on type
//! annotations. Keys are checked before anything is sent (Azurite answers 500 for a `/` in a
//! key, Azure 400), and so are the property limits.

use azure_core::http::{Method, Url};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::adapters::azure::{AzureClient, AzureError, Outgoing, Reply};

const VERSION: &str = "2019-02-02";
const NOMETADATA: &str = "application/json;odata=nometadata";
/// A string property holds at most 64 KiB of UTF-16.
pub const MAX_STRING_UNITS: usize = 32 * 1024;
/// An entity holds at most 1 MiB.
pub const MAX_ENTITY_BYTES: usize = 1024 * 1024;
/// A key holds at most 1 KiB.
const MAX_KEY_BYTES: usize = 1024;
/// An entity group transaction holds at most 100 operations.
pub const MAX_BATCH_OPS: usize = 100;

pub type Properties = Map<String, Value>;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("not found")]
    NotFound,
    /// 409, with the service's error code (`EntityAlreadyExists`, `TableAlreadyExists`, …).
    #[error("conflict: {0}")]
    Conflict(String),
    /// 412: the ETag no longer matches.
    #[error("the entity changed (precondition failed)")]
    PreconditionFailed,
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    InvalidKey(String),
    /// Worth retrying later.
    #[error("{0}")]
    Transient(String),
    /// Anything else: a bug, a missing permission, a misconfiguration.
    #[error("{0}")]
    Failed(String),
}

/// One operation of an entity group transaction. All share the batch's partition.
#[derive(Debug)]
pub enum BatchOp {
    Insert(Properties),
    /// Replace the entity; `If-Match` the ETag (or `*`).
    Replace {
        row_key: String,
        properties: Properties,
        if_match: String,
    },
}

/// The first failing operation of a refused batch; nothing of the batch was applied.
#[derive(Debug)]
pub struct BatchFailure {
    pub index: Option<usize>,
    pub error: TableError,
}

/// A table and the client that reaches it.
pub struct TableClient {
    client: AzureClient,
    /// The service endpoint (`https://acct.table.core.windows.net`, or Azurite's
    /// `http://127.0.0.1:10002/devstoreaccount1`), no trailing slash.
    endpoint: String,
    table: String,
    created: OnceCell<()>,
}

/// Checks a PartitionKey or RowKey against the service's rules.
pub fn check_key(what: &str, key: &str) -> Result<(), TableError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(TableError::InvalidKey(format!("{what} is longer than {MAX_KEY_BYTES} bytes")));
    }
    if let Some(c) = key.chars().find(|c| matches!(c, '/' | '\\' | '#' | '?') || c.is_control()) {
        return Err(TableError::InvalidKey(format!(
            "{what} `{}` contains {c:?}, which keys may not hold",
            key.escape_debug()
        )));
    }
    Ok(())
}

/// Table names: a letter, then letters and digits, 3 to 63 in all; `tables` is reserved.
pub fn check_table_name(name: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
        && !name.eq_ignore_ascii_case("tables");
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a table name (3–63 letters and digits, starting with a letter)"))
    }
}

/// Checks the service's size limits before sending.
pub fn check_size(properties: &Properties) -> Result<(), TableError> {
    for (name, value) in properties {
        if let Value::String(s) = value {
            let units = s.encode_utf16().count();
            if units > MAX_STRING_UNITS {
                return Err(TableError::TooLarge(format!(
                    "property `{name}` holds {units} UTF-16 units; Table Storage allows {MAX_STRING_UNITS} (64 KiB)"
                )));
            }
        }
    }
    let bytes = serde_json::to_vec(properties).map_or(usize::MAX, |b| b.len());
    if bytes > MAX_ENTITY_BYTES {
        return Err(TableError::TooLarge(format!(
            "the entity is {bytes} bytes; Table Storage allows {MAX_ENTITY_BYTES} (1 MiB)"
        )));
    }
    Ok(())
}

/// Percent-encodes everything but unreserved characters (so spaces are `%20`, never `+`).
pub fn encode(value: &str) -> String {
    crate::endpoint::encode_component(value)
}

/// An OData string literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn key_path(partition: &str, row: &str) -> String {
    format!("(PartitionKey={},RowKey={})", encode(&literal(partition)), encode(&literal(row)))
}

/// The error code and message of a Table error body, if it has one.
fn odata_error(body: &[u8]) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("odata.error"));
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_str).unwrap_or("").to_owned();
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(|m| m.get("value").or(Some(m)))
        .and_then(Value::as_str)
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    (code, message)
}

fn classify(status: u16, body: &[u8], what: &str) -> TableError {
    let (code, message) = odata_error(body);
    match status {
        404 => TableError::NotFound,
        409 => TableError::Conflict(code),
        412 => TableError::PreconditionFailed,
        400 if matches!(code.as_str(), "PropertyValueTooLarge" | "EntityTooLarge" | "RequestBodyTooLarge") => {
            TableError::TooLarge(format!("{what}: {message}"))
        }
        413 => TableError::TooLarge(format!("{what}: {message}")),
        408 | 429 | 500..=599 => TableError::Transient(format!("{what}: HTTP {status} {code}")),
        _ => TableError::Failed(format!("{what}: HTTP {status} {code} {message}")),
    }
}

fn azure(e: AzureError) -> TableError {
    match e {
        AzureError::Transient(m) => TableError::Transient(m),
        AzureError::Setup(m) => TableError::Failed(m),
    }
}

fn decode_entity(body: &[u8], what: &str) -> Result<Properties, TableError> {
    serde_json::from_slice(body).map_err(|e| TableError::Failed(format!("{what}: undecodable entity: {e}")))
}

/// An entity read from the table, with its ETag.
#[derive(Debug, Clone)]
pub struct Stored {
    pub properties: Properties,
    pub etag: String,
}

impl TableClient {
    pub fn new(client: AzureClient, endpoint: &str, table: &str) -> Result<Self, String> {
        check_table_name(table)?;
        Url::parse(endpoint).map_err(|e| format!("table endpoint `{endpoint}`: {e}"))?;
        Ok(Self {
            client,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            table: table.to_owned(),
            created: OnceCell::new(),
        })
    }

    fn url(&self, rest: &str) -> Result<Url, TableError> {
        Url::parse(&format!("{}/{rest}", self.endpoint))
            .map_err(|e| TableError::Failed(format!("cannot form a table URL: {e}")))
    }

    async fn call(
        &self,
        method: Method,
        url: &Url,
        extra: Vec<(&'static str, String)>,
        body: Option<(String, Vec<u8>)>,
        what: &str,
    ) -> Result<Reply, TableError> {
        let mut headers = vec![
            ("x-ms-version", VERSION.to_owned()),
            ("dataserviceversion", "3.0;NetFx".to_owned()),
            ("maxdataserviceversion", "3.0;NetFx".to_owned()),
        ];
        headers.extend(extra);
        self.client
            .send_request(&Outgoing { method, url, headers, body, accept: NOMETADATA }, what)
            .await
            .map_err(azure)
    }

    /// POSTs a JSON body asking for no content back (create table, insert entity).
    async fn post_json(&self, url: &Url, value: &impl serde::Serialize, what: &str) -> Result<Reply, TableError> {
        let body = serde_json::to_vec(value).map_err(|e| TableError::Failed(format!("{what}: {e}")))?;
        self.call(
            Method::Post,
            url,
            vec![("prefer", "return-no-content".into())],
            Some(("application/json".to_owned(), body)),
            what,
        )
        .await
    }

    /// Creates the table unless it exists; once per process.
    pub async fn ensure_table(&self) -> Result<(), TableError> {
        self.created
            .get_or_try_init(|| async {
                let url = self.url("Tables")?;
                let reply =
                    self.post_json(&url, &serde_json::json!({ "TableName": self.table }), "create table").await?;
                match reply.status {
                    201 | 204 => {
                        tracing::info!(table = %self.table, "created the store's table");
                        Ok(())
                    }
                    409 => Ok(()),
                    status => Err(classify(status, &reply.body, "create table")),
                }
            })
            .await
            .map(|_| ())
    }

    pub async fn get(&self, partition: &str, row: &str) -> Result<Option<Stored>, TableError> {
        check_key("PartitionKey", partition)?;
        check_key("RowKey", row)?;
        self.ensure_table().await?;
        let url = self.url(&format!("{}{}", self.table, key_path(partition, row)))?;
        let reply = self.call(Method::Get, &url, Vec::new(), None, "read entity").await?;
        match reply.status {
            200 => {
                let etag = reply
                    .header("etag")
                    .ok_or_else(|| TableError::Failed("read entity: no ETag in the answer".into()))?
                    .to_owned();
                Ok(Some(Stored { properties: decode_entity(&reply.body, "read entity")?, etag }))
            }
            404 => Ok(None),
            status => Err(classify(status, &reply.body, "read entity")),
        }
    }

    /// Inserts; `Conflict("EntityAlreadyExists")` if the key is taken. Returns the ETag.
    pub async fn insert(&self, properties: &Properties) -> Result<String, TableError> {
        self.check_entity(properties)?;
        self.ensure_table().await?;
        let url = self.url(&self.table)?;
        let reply = self.post_json(&url, properties, "insert entity").await?;
        match reply.status {
            201 | 204 => etag_of(&reply, "insert entity"),
            status => Err(classify(status, &reply.body, "insert entity")),
        }
    }

    /// Replaces the entity if its ETag is still `if_match` (or `*`); with `None`, inserts or
    /// replaces unconditionally.
    pub async fn replace(&self, properties: &Properties, if_match: Option<&str>) -> Result<String, TableError> {
        self.check_entity(properties)?;
        self.ensure_table().await?;
        let (partition, row) = keys_of(properties)?;
        let url = self.url(&format!("{}{}", self.table, key_path(partition, row)))?;
        let body = serde_json::to_vec(properties).map_err(|e| TableError::Failed(e.to_string()))?;
        let extra = if_match.map(|tag| vec![("if-match", tag.to_owned())]).unwrap_or_default();
        let reply =
            self.call(Method::Put, &url, extra, Some(("application/json".to_owned(), body)), "replace entity").await?;
        match reply.status {
            200 | 201 | 204 => etag_of(&reply, "replace entity"),
            status => Err(classify(status, &reply.body, "replace entity")),
        }
    }

    /// Deletes the entity if its ETag is still `if_match` (or `*`).
    pub async fn delete(&self, partition: &str, row: &str, if_match: &str) -> Result<(), TableError> {
        check_key("PartitionKey", partition)?;
        check_key("RowKey", row)?;
        self.ensure_table().await?;
        let url = self.url(&format!("{}{}", self.table, key_path(partition, row)))?;
        let reply =
            self.call(Method::Delete, &url, vec![("if-match", if_match.to_owned())], None, "delete entity").await?;
        match reply.status {
            200 | 204 => Ok(()),
            status => Err(classify(status, &reply.body, "delete entity")),
        }
    }

    /// Every entity matching `filter`, following continuation headers until there are none
    /// (Azure may answer a page with fewer rows than asked, or none, and a continuation), or
    /// until `max` entities were read.
    pub async fn query(&self, filter: &str, page_size: usize, max: usize) -> Result<Vec<Properties>, TableError> {
        self.ensure_table().await?;
        let mut out = Vec::new();
        let mut next: Option<(String, Option<String>)> = None;
        let mut pages = 0u32;
        loop {
            pages += 1;
            let mut query = format!("$filter={}&$top={}", encode(filter), page_size.clamp(1, 1000));
            if let Some((partition, row)) = &next {
                query.push_str(&format!("&NextPartitionKey={}", encode(partition)));
                if let Some(row) = row {
                    query.push_str(&format!("&NextRowKey={}", encode(row)));
                }
            }
            let mut url = self.url(&format!("{}()", self.table))?;
            url.set_query(Some(&query));
            let reply = self.call(Method::Get, &url, Vec::new(), None, "query entities").await?;
            if reply.status != 200 {
                return Err(classify(reply.status, &reply.body, "query entities"));
            }
            let page: Value = serde_json::from_slice(&reply.body)
                .map_err(|e| TableError::Failed(format!("query entities: undecodable page: {e}")))?;
            let rows = page.get("value").and_then(Value::as_array).cloned().unwrap_or_default();
            out.extend(rows.into_iter().filter_map(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            }));
            let continuation = reply
                .header("x-ms-continuation-nextpartitionkey")
                .map(|p| (p.to_owned(), reply.header("x-ms-continuation-nextrowkey").map(str::to_owned)));
            match continuation {
                Some(c) if out.len() < max => {
                    if next.as_ref() == Some(&c) || pages > 100_000 {
                        return Err(TableError::Failed("query entities: the continuation does not advance".into()));
                    }
                    next = Some(c);
                }
                _ => {
                    out.truncate(max);
                    return Ok(out);
                }
            }
        }
    }

    /// Runs `ops` as one entity group transaction in `partition`: all apply or none. Returns
    /// each operation's new ETag, in order.
    pub async fn batch(&self, partition: &str, ops: &[BatchOp]) -> Result<Vec<String>, BatchFailure> {
        let whole = |error| BatchFailure { index: None, error };
        if ops.is_empty() || ops.len() > MAX_BATCH_OPS {
            return Err(whole(TableError::Failed(format!("a batch holds 1 to {MAX_BATCH_OPS} operations"))));
        }
        check_key("PartitionKey", partition).map_err(whole)?;
        for (index, op) in ops.iter().enumerate() {
            let properties = match op {
                BatchOp::Insert(p) | BatchOp::Replace { properties: p, .. } => p,
            };
            let failed = |error| BatchFailure { index: Some(index), error };
            self.check_entity(properties).map_err(failed)?;
            let (p, _) = keys_of(properties).map_err(failed)?;
            if p != partition {
                return Err(failed(TableError::Failed("every operation of a batch shares its partition".into())));
            }
        }
        self.ensure_table().await.map_err(whole)?;
        let batch = format!("batch_{}", Uuid::new_v4());
        let changeset = format!("changeset_{}", Uuid::new_v4());
        let mut body = format!("--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n");
        for op in ops {
            let (line, if_match, properties) = match op {
                BatchOp::Insert(p) => (format!("POST {}/{} HTTP/1.1", self.endpoint, self.table), None, p),
                BatchOp::Replace { row_key, properties, if_match } => (
                    format!("PUT {}/{}{} HTTP/1.1", self.endpoint, self.table, key_path(partition, row_key)),
                    Some(if_match),
                    properties,
                ),
            };
            let json = serde_json::to_string(properties).map_err(|e| whole(TableError::Failed(e.to_string())))?;
            body.push_str(&format!(
                "--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n{line}\r\n"
            ));
            body.push_str(&format!(
                "Accept: {NOMETADATA}\r\nContent-Type: application/json\r\nDataServiceVersion: 3.0;\r\nPrefer: return-no-content\r\n"
            ));
            if let Some(tag) = if_match {
                body.push_str(&format!("If-Match: {tag}\r\n"));
            }
            body.push_str(&format!("\r\n{json}\r\n"));
        }
        body.push_str(&format!("--{changeset}--\r\n--{batch}--\r\n"));
        let url = self.url("$batch").map_err(whole)?;
        let content_type = format!("multipart/mixed; boundary={batch}");
        let reply = self
            .call(Method::Post, &url, Vec::new(), Some((content_type, body.into_bytes())), "entity group transaction")
            .await
            .map_err(whole)?;
        if reply.status != 202 {
            return Err(whole(classify(reply.status, &reply.body, "entity group transaction")));
        }
        let parts = parse_batch_response(&reply.body);
        if let Some(failed) = parts.iter().find(|p| p.status >= 300) {
            let (_, message) = odata_error(failed.body.as_bytes());
            let index = message.split_once(':').and_then(|(i, _)| i.trim().parse::<usize>().ok());
            return Err(BatchFailure {
                index,
                error: classify(failed.status, failed.body.as_bytes(), "entity group transaction"),
            });
        }
        if parts.len() != ops.len() {
            return Err(whole(TableError::Failed(format!(
                "entity group transaction: {} answers for {} operations",
                parts.len(),
                ops.len()
            ))));
        }
        Ok(parts.into_iter().map(|p| p.etag.unwrap_or_default()).collect())
    }

    fn check_entity(&self, properties: &Properties) -> Result<(), TableError> {
        let (partition, row) = keys_of(properties)?;
        check_key("PartitionKey", partition)?;
        check_key("RowKey", row)?;
        check_size(properties)
    }
}

fn etag_of(reply: &Reply, what: &str) -> Result<String, TableError> {
    reply.header("etag").map(str::to_owned).ok_or_else(|| TableError::Failed(format!("{what}: no ETag in the answer")))
}

fn keys_of(properties: &Properties) -> Result<(&str, &str), TableError> {
    let get = |name: &str| {
        properties
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| TableError::InvalidKey(format!("the entity has no string {name}")))
    };
    Ok((get("PartitionKey")?, get("RowKey")?))
}

/// One answer inside a batch response.
#[derive(Debug, PartialEq)]
struct PartAnswer {
    status: u16,
    etag: Option<String>,
    body: String,
}

/// Reads the `HTTP/1.1 NNN` answers of a batch response, in order, with their ETags and bodies.
fn parse_batch_response(body: &[u8]) -> Vec<PartAnswer> {
    let text = String::from_utf8_lossy(body);
    let mut answers = Vec::new();
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r')).peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("HTTP/1.1 ") else { continue };
        let status = rest.split(' ').next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut etag = None;
        for header in lines.by_ref() {
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.trim().eq_ignore_ascii_case("etag")
            {
                etag = Some(value.trim().to_owned());
            }
        }
        let mut content = String::new();
        while let Some(next) = lines.peek() {
            if next.starts_with("--") {
                break;
            }
            content.push_str(next);
            lines.next();
        }
        answers.push(PartAnswer { status, etag, body: content });
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_the_service_refuses_are_refused_here() {
        for bad in ["a/b", "a\\b", "a#b", "a?b", "a\u{0}b", "a\u{1f}b", "a\u{7f}b", "a\u{9f}b"] {
            assert!(matches!(check_key("RowKey", bad), Err(TableError::InvalidKey(_))), "{bad:?}");
        }
        assert!(check_key("RowKey", &"x".repeat(1025)).is_err());
        for good in ["due", "0001764072000000_abc", "a-b:c|d", "ü"] {
            check_key("RowKey", good).unwrap();
        }
    }

    #[test]
    fn property_limits_are_checked_before_sending() {
        let mut p = Properties::new();
        p.insert("PartitionKey".into(), "p".into());
        p.insert("RowKey".into(), "r".into());
        p.insert("Body".into(), "x".repeat(MAX_STRING_UNITS).into());
        check_size(&p).unwrap();
        p.insert("Body".into(), "x".repeat(MAX_STRING_UNITS + 1).into());
        let err = check_size(&p).unwrap_err().to_string();
        assert!(err.contains("`Body`") && err.contains("64 KiB"), "{err}");
        // Non-BMP characters count twice in UTF-16.
        p.insert("Body".into(), "😀".repeat(MAX_STRING_UNITS / 2 + 1).into());
        assert!(check_size(&p).is_err());
        p.remove("Body");
        for i in 0..40 {
            p.insert(format!("P{i}"), "x".repeat(30_000).into());
        }
        assert!(check_size(&p).unwrap_err().to_string().contains("1 MiB"));
    }

    #[test]
    fn table_names_follow_the_service_rules() {
        check_table_name("elevate").unwrap();
        check_table_name("t0123abc").unwrap();
        for bad in ["el", "1abc", "ele-vate", "tables", "Tables", &"a".repeat(64)] {
            assert!(check_table_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_percent_encoded_without_plus_signs() {
        assert_eq!(encode("PartitionKey eq 'a''b'"), "PartitionKey%20eq%20%27a%27%27b%27");
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn a_batch_response_yields_each_answer_in_order() {
        let ok = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 204 No Content\r\nETag: W/\"datetime'2026-11-25T12%3A00%3A00.1Z'\"\r\n\r\n\r\n--changesetresponse_2\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 201 Created\r\nETag: W/\"b\"\r\n\r\n\r\n--changesetresponse_2--\r\n--batchresponse_1--\r\n";
        let answers = parse_batch_response(ok.as_bytes());
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].status, 204);
        assert_eq!(answers[0].etag.as_deref(), Some("W/\"datetime'2026-11-25T12%3A00%3A00.1Z'\""));
        assert_eq!(answers[1].etag.as_deref(), Some("W/\"b\""));

        let failed = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n--changesetresponse_2\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 409 Conflict\r\nContent-ID: 2\r\n\r\n{\"odata.error\":{\"code\":\"EntityAlreadyExists\",\"message\":{\"lang\":\"en-US\",\"value\":\"1:The specified entity already exists.\\nRequestId:x\"}}}\r\n--changesetresponse_2--\r\n--batchresponse_1--\r\n";
        let answers = parse_batch_response(failed.as_bytes());
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].status, 409);
        assert_eq!(odata_error(answers[0].body.as_bytes()).0, "EntityAlreadyExists");
        assert!(odata_error(answers[0].body.as_bytes()).1.starts_with("1:"));
    }
}
