//! A small Azure Storage Queue REST client (azure-spec §6) over the shared azure_core pipeline:
//! create a queue, put a message that becomes visible later, get, peek and delete messages. What
//! Elevate uses to start work at a chosen moment (expiry on time, notices without delay); the
//! Functions host's queue trigger reads the same queues.
//!
//! Wire format, x-ms-version 2021-12-02: message text goes out base64-encoded inside
//! `<QueueMessage><MessageText>…</MessageText></QueueMessage>` (the Functions host decodes base64
//! by default), with `messagettl=-1` so a message delayed by up to 7 days does not expire as it
//! becomes visible. Answers are XML, read by hand for the handful of elements used here (no XML
//! crate): entities are unescaped; the XML declaration and whitespace between elements are
//! skipped. Limits are checked before anything is sent: queue names (3–63 lower-case letters,
//! digits and single hyphens, starting and ending alphanumeric), a visibility delay of at most
//! 7 days, base64 text of at most 64 KiB, 1 to 32 messages per read.
//!
//! Authorization: with [`Signer::SharedKey`](crate::adapters::azure::Signer) (Azurite and
//! connection strings) [`QueueClient::new`] switches the key to the Queue service's
//! string-to-sign; in Azure, use [`Signer::Bearer`](crate::adapters::azure::Signer) with the
//! scope `https://storage.azure.com/.default` (the client is otherwise unchanged) and a role on
//! the account or queue: *Storage Queue Data Message Sender* to put, *… Message Processor* to
//! get, peek and delete, *… Contributor* for all of that and to create queues.
//!
//! Delivery is at least once: a put retried after a timeout or a 5xx may enqueue the message
//! twice, and a message whose visibility lapses before it is deleted comes back. Consumers must be
//! idempotent.
//!
//! Must never log or put into an error a message's text, a pop receipt, a query string or a key.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use azure_core::http::{Method, Url};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

use crate::adapters::azure::shared_key::Service;
use crate::adapters::azure::{AzureClient, AzureError, Outgoing, Reply};
use crate::endpoint::encode_component;

/// The REST API version this client speaks.
pub const VERSION: &str = "2021-12-02";
/// The longest a message may stay invisible, when put or when read: 7 days.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(604_800);
/// The longest message text, once base64-encoded: 64 KiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The most messages one read returns.
pub const MAX_MESSAGES_PER_READ: u8 = 32;

const XML: &str = "application/xml";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// 404, with the service's error code (`QueueNotFound`, `MessageNotFound`).
    #[error("not found: {0}")]
    NotFound(String),
    /// 409, or a pop receipt that no longer matches (the message was read again since), with the
    /// service's error code.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Refused before anything was sent: a bad queue name, an oversize message, a delay beyond
    /// 7 days, a read of too many or too few messages.
    #[error("{0}")]
    Invalid(String),
    /// Throttling, 5xx, timeouts (already retried by the client): worth retrying later.
    #[error("{0}")]
    Transient(String),
    /// Anything else (a refused signature or token, a missing permission, a misconfiguration),
    /// with the service's error code.
    #[error("{0}")]
    Failed(String),
}

impl QueueError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Transient(_))
    }
}

/// A queue name the service accepts: 3 to 63 lower-case letters, digits and hyphens, starting
/// and ending with a letter or digit, no two hyphens in a row.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueueName(String);

impl QueueName {
    pub fn parse(name: &str) -> Result<Self, QueueError> {
        let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = (3..=63).contains(&name.len())
            && name.chars().all(|c| alphanumeric(c) || c == '-')
            && name.starts_with(alphanumeric)
            && name.ends_with(alphanumeric)
            && !name.contains("--");
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(QueueError::Invalid(format!(
                "`{}` is not a queue name (3–63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit)",
                name.escape_debug()
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks an opaque token the service handed out (a message id, a pop receipt).
fn check_token(what: &str, value: &str) -> Result<(), QueueError> {
    if value.is_empty() || value.len() > 1024 || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(QueueError::Invalid(format!("that is not a {what}")));
    }
    Ok(())
}

/// A message's id, as the service assigned it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// An id from elsewhere (the Functions host's trigger metadata, say).
    pub fn parse(id: &str) -> Result<Self, QueueError> {
        check_token("message id", id)?;
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What proves the holder read a message last: needed to delete it. Opaque; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct PopReceipt(String);

impl PopReceipt {
    pub fn parse(receipt: &str) -> Result<Self, QueueError> {
        check_token("pop receipt", receipt)?;
        Ok(Self(receipt.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PopReceipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PopReceipt(..)")
    }
}

/// What the service says of a message just put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageReceipt {
    pub id: MessageId,
    pub pop_receipt: PopReceipt,
    pub insertion_time: DateTime<Utc>,
    /// 9999-12-31T23:59:59Z: messages are put never to expire.
    pub expiration_time: DateTime<Utc>,
    pub next_visible_time: DateTime<Utc>,
}

/// A message read (and hidden again for a while) from a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueMessage {
    pub id: MessageId,
    pub pop_receipt: PopReceipt,
    /// How many times it has been read, this read included.
    pub dequeue_count: u32,
    pub insertion_time: DateTime<Utc>,
    pub expiration_time: DateTime<Utc>,
    /// When it shows again unless deleted first.
    pub next_visible_time: DateTime<Utc>,
    /// Decoded from base64 — or as it came, if it is not base64 of UTF-8 (a message put by a
    /// tool without encoding). Text that happens to be valid base64 of UTF-8 is decoded.
    pub text: String,
}

/// A message seen without being read: it stays visible and keeps no pop receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeekedMessage {
    pub id: MessageId,
    pub dequeue_count: u32,
    pub insertion_time: DateTime<Utc>,
    pub expiration_time: DateTime<Utc>,
    /// As [`QueueMessage::text`].
    pub text: String,
}

/// The queues of one storage account, and the client that reaches them.
pub struct QueueClient {
    client: AzureClient,
    /// The service endpoint (`https://acct.queue.core.windows.net`, or Azurite's path-style
    /// `http://127.0.0.1:10001/devstoreaccount1`), no trailing slash.
    endpoint: String,
    /// The queues this process made sure exist.
    created: Mutex<HashSet<QueueName>>,
}

/// Whole seconds, rounded up: a message is never shown before it was asked to be.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

fn check_visibility(what: &str, visibility: Duration, min_seconds: u64) -> Result<u64, QueueError> {
    let seconds = whole_seconds(visibility);
    if seconds < min_seconds || seconds > MAX_VISIBILITY.as_secs() {
        return Err(QueueError::Invalid(format!(
            "{what}: a visibility timeout of {seconds} s is outside {min_seconds}–{} s (7 days)",
            MAX_VISIBILITY.as_secs()
        )));
    }
    Ok(seconds)
}

fn check_count(what: &str, max: u8) -> Result<u8, QueueError> {
    if !(1..=MAX_MESSAGES_PER_READ).contains(&max) {
        return Err(QueueError::Invalid(format!(
            "{what}: {max} messages asked for; a read returns 1 to {MAX_MESSAGES_PER_READ}"
        )));
    }
    Ok(max)
}

fn azure(e: AzureError) -> QueueError {
    match e {
        AzureError::Transient(m) => QueueError::Transient(m),
        AzureError::Setup(m) => QueueError::Failed(m),
    }
}

/// The service's error code (the `x-ms-error-code` header, or the body's `<Code>`) and the
/// first line of its `<Message>`. Nothing else of the body: an authentication failure's details
/// echo the string the service signed.
fn service_error(header_code: Option<&str>, body: &[u8]) -> (String, String) {
    let body = String::from_utf8_lossy(body);
    let code = header_code.map(str::to_owned).or_else(|| element_text(&body, "Code")).unwrap_or_default();
    let message = element_text(&body, "Message").unwrap_or_default();
    (code.trim().to_owned(), message.lines().next().unwrap_or("").trim().to_owned())
}

fn classify(status: u16, header_code: Option<&str>, body: &[u8], what: &str) -> QueueError {
    let (code, message) = service_error(header_code, body);
    match status {
        404 => QueueError::NotFound(format!("{what}: {code}")),
        409 => QueueError::Conflict(format!("{what}: {code}")),
        400 if code == "PopReceiptMismatch" => QueueError::Conflict(format!("{what}: {code}")),
        408 | 429 | 500..=599 => QueueError::Transient(format!("{what}: HTTP {status} {code}")),
        _ => QueueError::Failed(format!("{what}: HTTP {status} {code} {message}").trim_end().to_owned()),
    }
}

/// The error an unexpected answer means.
fn failure(reply: &Reply, what: &str) -> QueueError {
    classify(reply.status, reply.header("x-ms-error-code"), &reply.body, what)
}

impl QueueClient {
    /// `endpoint`: the Queue service, `https://acct.queue.core.windows.net` or Azurite's
    /// `http://127.0.0.1:10001/devstoreaccount1`. A SharedKey signer is switched to the Queue
    /// service's string-to-sign.
    pub fn new(client: AzureClient, endpoint: &str) -> Result<Self, String> {
        let url = Url::parse(endpoint).map_err(|e| format!("queue endpoint `{endpoint}`: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.fragment().is_some() {
            // Not echoed whole: a query may be a SAS token.
            let shown = format!("{}{}", url.origin().ascii_serialization(), url.path());
            return Err(format!("queue endpoint `{shown}…`: takes an http(s) URL without a query"));
        }
        Ok(Self {
            client: client.for_storage(Service::Queue),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            created: Mutex::new(HashSet::new()),
        })
    }

    fn url(&self, path: &str, query: &str) -> Result<Url, QueueError> {
        let mut url = Url::parse(&format!("{}/{path}", self.endpoint))
            .map_err(|e| QueueError::Failed(format!("cannot form a queue URL: {e}")))?;
        if !query.is_empty() {
            url.set_query(Some(query));
        }
        Ok(url)
    }

    async fn call(&self, method: Method, url: &Url, body: Option<Vec<u8>>, what: &str) -> Result<Reply, QueueError> {
        let outgoing = Outgoing {
            method,
            url,
            headers: vec![("x-ms-version", VERSION.to_owned())],
            body: body.map(|bytes| (XML.to_owned(), bytes)),
            accept: XML,
        };
        self.client.send_request(&outgoing, what).await.map_err(azure)
    }

    /// Creates the queue unless it exists; once per queue per process.
    pub async fn ensure_queue(&self, queue: &QueueName) -> Result<(), QueueError> {
        if self.created.lock().unwrap_or_else(PoisonError::into_inner).contains(queue) {
            return Ok(());
        }
        let url = self.url(queue.as_str(), "")?;
        let reply = self.call(Method::Put, &url, None, "create queue").await?;
        match reply.status {
            201 => tracing::info!(queue = %queue, "created the queue"),
            // 204: it exists with the same metadata; 409 QueueAlreadyExists: with other metadata.
            204 => {}
            409 if service_error(reply.header("x-ms-error-code"), &reply.body).0 == "QueueAlreadyExists" => {}
            _ => return Err(failure(&reply, "create queue")),
        }
        self.created.lock().unwrap_or_else(PoisonError::into_inner).insert(queue.clone());
        Ok(())
    }

    /// Puts `text` on the queue (creating it first if this process has not), to become visible
    /// `visible_in` from now (rounded up to whole seconds, at most 7 days), never to expire.
    pub async fn put_message(
        &self,
        queue: &QueueName,
        text: &str,
        visible_in: Duration,
    ) -> Result<MessageReceipt, QueueError> {
        let what = "put message";
        let seconds = check_visibility(what, visible_in, 0)?;
        let encoded = STANDARD.encode(text.as_bytes());
        if encoded.len() > MAX_MESSAGE_BYTES {
            return Err(QueueError::Invalid(format!(
                "{what}: the message is {} bytes in base64; a queue takes {MAX_MESSAGE_BYTES} (64 KiB)",
                encoded.len()
            )));
        }
        self.ensure_queue(queue).await?;
        let url =
            self.url(&format!("{}/messages", queue.as_str()), &format!("visibilitytimeout={seconds}&messagettl=-1"))?;
        // INVARIANT: base64 holds no character XML must escape.
        let body = format!("<QueueMessage><MessageText>{encoded}</MessageText></QueueMessage>");
        let reply = self.call(Method::Post, &url, Some(body.into_bytes()), what).await?;
        if reply.status != 201 {
            return Err(failure(&reply, what));
        }
        let body = String::from_utf8_lossy(&reply.body);
        let mut messages = elements(&body, "QueueMessage").into_iter();
        let (Some(fields), None) = (messages.next(), messages.next()) else {
            return Err(QueueError::Failed(format!("{what}: the answer does not hold one message")));
        };
        Ok(MessageReceipt {
            id: MessageId(required(fields, "MessageId", what)?),
            pop_receipt: PopReceipt(required(fields, "PopReceipt", what)?),
            insertion_time: time(fields, "InsertionTime", what)?,
            expiration_time: time(fields, "ExpirationTime", what)?,
            next_visible_time: time(fields, "TimeNextVisible", what)?,
        })
    }

    /// Reads up to `max` (1 to 32) visible messages and hides them for `visibility` (1 s to
    /// 7 days, rounded up to whole seconds); delete each once handled, or it shows again.
    pub async fn get_messages(
        &self,
        queue: &QueueName,
        max: u8,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        let what = "get messages";
        let max = check_count(what, max)?;
        let seconds = check_visibility(what, visibility, 1)?;
        let url = self.url(
            &format!("{}/messages", queue.as_str()),
            &format!("numofmessages={max}&visibilitytimeout={seconds}"),
        )?;
        let reply = self.call(Method::Get, &url, None, what).await?;
        if reply.status != 200 {
            return Err(failure(&reply, what));
        }
        let body = String::from_utf8_lossy(&reply.body);
        elements(&body, "QueueMessage")
            .into_iter()
            .map(|fields| {
                Ok(QueueMessage {
                    id: MessageId(required(fields, "MessageId", what)?),
                    pop_receipt: PopReceipt(required(fields, "PopReceipt", what)?),
                    dequeue_count: count(fields, what)?,
                    insertion_time: time(fields, "InsertionTime", what)?,
                    expiration_time: time(fields, "ExpirationTime", what)?,
                    next_visible_time: time(fields, "TimeNextVisible", what)?,
                    text: message_text(fields),
                })
            })
            .collect()
    }

    /// Up to `max` (1 to 32) visible messages, left visible and unread.
    pub async fn peek_messages(&self, queue: &QueueName, max: u8) -> Result<Vec<PeekedMessage>, QueueError> {
        let what = "peek messages";
        let max = check_count(what, max)?;
        let url = self.url(&format!("{}/messages", queue.as_str()), &format!("peekonly=true&numofmessages={max}"))?;
        let reply = self.call(Method::Get, &url, None, what).await?;
        if reply.status != 200 {
            return Err(failure(&reply, what));
        }
        let body = String::from_utf8_lossy(&reply.body);
        elements(&body, "QueueMessage")
            .into_iter()
            .map(|fields| {
                Ok(PeekedMessage {
                    id: MessageId(required(fields, "MessageId", what)?),
                    dequeue_count: count(fields, what)?,
                    insertion_time: time(fields, "InsertionTime", what)?,
                    expiration_time: time(fields, "ExpirationTime", what)?,
                    text: message_text(fields),
                })
            })
            .collect()
    }

    /// The service's approximate count of messages in the queue, hidden ones included.
    pub async fn approximate_count(&self, queue: &QueueName) -> Result<u64, QueueError> {
        let what = "count messages";
        let url = self.url(queue.as_str(), "comp=metadata")?;
        let reply = self.call(Method::Get, &url, None, what).await?;
        if reply.status != 200 {
            return Err(failure(&reply, what));
        }
        reply
            .header("x-ms-approximate-messages-count")
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| QueueError::Failed(format!("{what}: the answer holds no message count")))
    }

    /// Deletes a message read with `pop_receipt`. A message already gone (deleted, expired, or
    /// its queue deleted) is fine; one read again since is a [`QueueError::Conflict`].
    pub async fn delete_message(
        &self,
        queue: &QueueName,
        id: &MessageId,
        pop_receipt: &PopReceipt,
    ) -> Result<(), QueueError> {
        let what = "delete message";
        let url = self.url(
            &format!("{}/messages/{}", queue.as_str(), encode_component(id.as_str())),
            &format!("popreceipt={}", encode_component(pop_receipt.as_str())),
        )?;
        let reply = self.call(Method::Delete, &url, None, what).await?;
        match reply.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(failure(&reply, what)),
        }
    }
}

/// A required element's text, unescaped and trimmed.
fn required(fields: &str, name: &str, what: &str) -> Result<String, QueueError> {
    element_text(fields, name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| QueueError::Failed(format!("{what}: the answer lacks `{name}`")))
}

/// An RFC 1123 time element (`Wed, 25 Nov 2026 12:34:03 GMT`).
fn time(fields: &str, name: &str, what: &str) -> Result<DateTime<Utc>, QueueError> {
    let value = required(fields, name, what)?;
    DateTime::parse_from_rfc2822(&value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| QueueError::Failed(format!("{what}: `{name}` is not a time: `{}`", value.escape_debug())))
}

fn count(fields: &str, what: &str) -> Result<u32, QueueError> {
    let value = required(fields, "DequeueCount", what)?;
    value.parse().map_err(|_| QueueError::Failed(format!("{what}: `DequeueCount` is not a count")))
}

/// The message text: base64 of UTF-8 decoded, anything else as it came.
fn message_text(fields: &str) -> String {
    let raw = element_text(fields, "MessageText").unwrap_or_default();
    STANDARD.decode(raw.trim()).ok().and_then(|bytes| String::from_utf8(bytes).ok()).unwrap_or(raw)
}

/// The contents (markup included, not unescaped) of each `<name …>…</name>` or `<name/>` in
/// `xml`, in order. Elements of the same name must not nest, which holds for the answers read
/// here. An element left open ends the scan.
fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some((_, after)) = rest.split_once('<') {
        rest = after;
        let Some(tail) = after.strip_prefix(name) else { continue };
        let Some((attributes, inside)) = tail.split_once('>') else { break };
        // `<QueueMessages>` is not `<QueueMessage>`: the name must end at `>`, `/` or a space.
        if !(attributes.is_empty() || attributes.starts_with(|c: char| c == '/' || c.is_ascii_whitespace())) {
            continue;
        }
        if attributes.ends_with('/') {
            found.push("");
            rest = inside;
            continue;
        }
        let Some((content, after_close)) = inside.split_once(&format!("</{name}")) else { break };
        found.push(content);
        rest = after_close.split_once('>').map_or("", |(_, r)| r);
    }
    found
}

/// The unescaped text of the first `name` element, if there is one.
fn element_text(xml: &str, name: &str) -> Option<String> {
    elements(xml, name).into_iter().next().map(unescape)
}

/// Replaces XML's predefined entities and character references; leaves anything else as it is.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((before, after)) = rest.split_once('&') {
        out.push_str(before);
        let decoded = after.split_once(';').and_then(|(entity, tail)| {
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, tail))
        });
        match decoded {
            Some((c, tail)) => {
                out.push(c);
                rest = tail;
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_the_service_rules() {
        for good in ["abc", "revocations", "a-b-c", "0ab", "ab9", &"a".repeat(63)] {
            assert_eq!(QueueName::parse(good).unwrap().as_str(), good);
        }
        for bad in ["ab", "", "Abc", "a--b", "-abc", "abc-", "a_bc", "a.bc", "ab c", "äbc", &"a".repeat(64)] {
            let err = QueueName::parse(bad).unwrap_err();
            assert!(matches!(err, QueueError::Invalid(_)), "{bad:?}: {err:?}");
        }
    }

    #[test]
    fn entities_and_character_references_are_unescaped() {
        assert_eq!(unescape("a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos;"), "a & b <c> \"d\" 'e'");
        assert_eq!(unescape("&#65;&#x42;&#X43;&#x1F600;"), "ABC😀");
        // Unknown or broken references stay as they are.
        assert_eq!(unescape("&nbsp; & &#xZZ; &#1114112; &amp"), "&nbsp; & &#xZZ; &#1114112; &amp");
        assert_eq!(unescape("&amp;lt;"), "&lt;");
    }

    #[test]
    fn a_pretty_printed_answer_with_a_declaration_is_read() {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<QueueMessagesList>\n  <QueueMessage>\n    <MessageId>id-1</MessageId>\n    <InsertionTime>Wed, 25 Nov 2026 12:34:03 GMT</InsertionTime>\n    <ExpirationTime>Fri, 31 Dec 9999 23:59:59 GMT</ExpirationTime>\n    <PopReceipt>AgAA+/=</PopReceipt>\n    <TimeNextVisible>Wed, 25 Nov 2026 12:35:03 GMT</TimeNextVisible>\n    <DequeueCount>3</DequeueCount>\n    <MessageText>PCY+</MessageText>\n  </QueueMessage>\n  <QueueMessage><MessageId>id-2</MessageId><MessageText>not base64 &amp; &lt;raw&gt;</MessageText></QueueMessage>\n  <QueueMessage><MessageId>id-3</MessageId><MessageText/></QueueMessage>\n</QueueMessagesList>";
        let messages = elements(body, "QueueMessage");
        assert_eq!(messages.len(), 3);
        let first = messages[0];
        assert_eq!(required(first, "MessageId", "t").unwrap(), "id-1");
        assert_eq!(required(first, "PopReceipt", "t").unwrap(), "AgAA+/=");
        assert_eq!(count(first, "t").unwrap(), 3);
        assert_eq!(time(first, "InsertionTime", "t").unwrap().to_rfc3339(), "2026-11-25T12:34:03+00:00");
        assert_eq!(time(first, "ExpirationTime", "t").unwrap().to_rfc3339(), "9999-12-31T23:59:59+00:00");
        assert_eq!(message_text(first), "<&>");
        assert_eq!(message_text(messages[1]), "not base64 & <raw>");
        assert_eq!(message_text(messages[2]), "");
        // `QueueMessagesList` is not mistaken for `QueueMessage`, nor `MessageTextX` for `MessageText`.
        assert_eq!(elements("<MessageTextX>a</MessageTextX><MessageText>b</MessageText>", "MessageText"), vec!["b"]);
        assert!(
            matches!(required(messages[1], "PopReceipt", "t"), Err(QueueError::Failed(m)) if m == "t: the answer lacks `PopReceipt`")
        );
    }

    #[test]
    fn an_unfinished_element_ends_the_scan() {
        assert_eq!(elements("<A>1</A><A>2", "A"), vec!["1"]);
        assert_eq!(elements("<A", "A"), Vec::<&str>::new());
        assert_eq!(elements("<A x=\"1\">v</A>", "A"), vec!["v"]);
    }

    #[test]
    fn service_errors_yield_their_code_and_first_line() {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:1\nTime:2026</Message><AuthenticationErrorDetail>secret-ish</AuthenticationErrorDetail></Error>";
        let err = classify(403, None, body.as_bytes(), "put message");
        assert_eq!(
            err.to_string(),
            "put message: HTTP 403 AuthenticationFailed Server failed to authenticate the request."
        );
        assert!(matches!(err, QueueError::Failed(_)));
        let err = classify(404, Some("QueueNotFound"), b"", "get messages");
        assert!(matches!(err, QueueError::NotFound(m) if m == "get messages: QueueNotFound"));
        let err = classify(400, None, b"<Error><Code>PopReceiptMismatch</Code></Error>", "delete message");
        assert!(matches!(err, QueueError::Conflict(m) if m == "delete message: PopReceiptMismatch"));
        assert!(classify(503, None, b"", "x").is_transient());
        assert!(!classify(400, Some("InvalidQueryParameterValue"), b"", "x").is_transient());
    }

    #[test]
    fn an_endpoint_with_a_query_is_refused_without_echoing_it() {
        crate::adapters::azure::install_tls_provider();
        let clock = std::sync::Arc::new(crate::clock::ManualClock::new("2026-11-25T12:00:00Z".parse().unwrap()));
        let key = crate::adapters::azure::SharedKey::new("acct", "a2V5", clock).unwrap();
        let client = || {
            let signer = crate::adapters::azure::Signer::SharedKey(key.clone());
            AzureClient::with_signer(signer, crate::adapters::azure::RetryPolicy::default()).unwrap()
        };
        let err = QueueClient::new(client(), "https://acct.queue.core.windows.net/?sv=2022&sig=SECRET").err().unwrap();
        assert_eq!(err, "queue endpoint `https://acct.queue.core.windows.net/…`: takes an http(s) URL without a query");
        assert!(QueueClient::new(client(), "ftp://acct").is_err());
        assert!(QueueClient::new(client(), "http://127.0.0.1:10001/devstoreaccount1/").is_ok());
    }

    #[test]
    fn visibility_is_whole_seconds_rounded_up_within_seven_days() {
        assert_eq!(check_visibility("t", Duration::ZERO, 0).unwrap(), 0);
        assert_eq!(check_visibility("t", Duration::from_millis(1500), 0).unwrap(), 2);
        assert_eq!(check_visibility("t", MAX_VISIBILITY, 0).unwrap(), 604_800);
        assert!(check_visibility("t", MAX_VISIBILITY + Duration::from_millis(1), 0).is_err());
        assert!(check_visibility("t", Duration::ZERO, 1).is_err());
        assert!(check_count("t", 0).is_err() && check_count("t", 33).is_err() && check_count("t", 32).is_ok());
    }
}
