//! The Queue client against the real Azurite Queue service (and, where a test must see what is
//! sent or prove nothing was, against a fake): creation, round trips, visibility, deletion, limits
//! and authentication failures. Every test has queues of its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use elevate::adapters::azure::{AzureClient, RetryPolicy, SharedKey, Signer};
use elevate::adapters::queue::{MAX_MESSAGE_BYTES, MessageId, QueueClient, QueueError, QueueMessage, QueueName};
use elevate::config::{DEV_STORAGE_ACCOUNT, DEV_STORAGE_KEY};

use crate::support::azurite::{azurite_queues, fresh_queue};
use crate::support::fake_http::{FakeReply, FakeRequest, serve};

const TEXT: &str = "grant g1 — ünïcødé 😀 <&> \"quoted\" 'apos' &amp; ]]>";

/// Reads until a message shows (or `within` passes), polling; the time it took.
async fn first_visible(queue: &QueueClient, name: &QueueName, within: Duration) -> (QueueMessage, Duration) {
    let started = Instant::now();
    loop {
        let mut got = queue.get_messages(name, 1, Duration::from_secs(1)).await.unwrap();
        if let Some(message) = got.pop() {
            assert!(got.is_empty());
            return (message, started.elapsed());
        }
        assert!(started.elapsed() < within, "no message showed within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_queue_is_created_and_creating_it_again_is_fine() {
    let azurite = azurite_queues();
    let name = fresh_queue();
    let queue = azurite.client();
    queue.ensure_queue(&name).await.unwrap();
    queue.ensure_queue(&name).await.unwrap();
    // Another process (a fresh client, no cache) finds it there.
    azurite.client().ensure_queue(&name).await.unwrap();
    assert_eq!(queue.approximate_count(&name).await.unwrap(), 0);
    assert_eq!(queue.peek_messages(&name, 32).await.unwrap(), Vec::new());
}

#[tokio::test]
async fn a_missing_queue_is_not_found_and_deleting_from_it_is_fine() {
    let queue = azurite_queues().client();
    let name = fresh_queue();
    let err = queue.get_messages(&name, 1, Duration::from_secs(30)).await.unwrap_err();
    assert!(matches!(&err, QueueError::NotFound(m) if m == "get messages: QueueNotFound"), "{err:?}");
    let err = queue.approximate_count(&name).await.unwrap_err();
    assert!(matches!(&err, QueueError::NotFound(m) if m == "count messages: QueueNotFound"), "{err:?}");
    let id = MessageId::parse("00000000-0000-0000-0000-000000000000").unwrap();
    let receipt = elevate::adapters::queue::PopReceipt::parse("AAAA").unwrap();
    queue.delete_message(&name, &id, &receipt).await.unwrap();
}

#[tokio::test]
async fn a_message_round_trips_and_counts_its_reads() {
    let queue = azurite_queues().client();
    let name = fresh_queue();
    // put_message creates the queue.
    let put = queue.put_message(&name, TEXT, Duration::ZERO).await.unwrap();
    assert_eq!(put.expiration_time.to_rfc3339(), "9999-12-31T23:59:59+00:00", "never expires");
    assert_eq!(put.next_visible_time, put.insertion_time);

    let peeked = queue.peek_messages(&name, 32).await.unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!((&peeked[0].id, peeked[0].dequeue_count, peeked[0].text.as_str()), (&put.id, 0, TEXT));

    let mut got = queue.get_messages(&name, 32, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 1);
    let first = got.remove(0);
    assert_eq!(first.id, put.id);
    assert_eq!(first.text, TEXT);
    assert_eq!(first.dequeue_count, 1);
    assert_eq!(first.insertion_time, put.insertion_time);
    assert_eq!(first.expiration_time, put.expiration_time);
    assert!(first.next_visible_time > put.insertion_time);
    // Hidden now.
    assert_eq!(queue.get_messages(&name, 32, Duration::from_secs(1)).await.unwrap(), Vec::new());
    assert_eq!(queue.approximate_count(&name).await.unwrap(), 1);

    // Its visibility lapses without a delete: it shows again, read twice.
    let (second, waited) = first_visible(&queue, &name, Duration::from_secs(10)).await;
    assert!(waited < Duration::from_secs(10));
    assert_eq!((&second.id, second.dequeue_count, second.text.as_str()), (&put.id, 2, TEXT));
    assert_ne!(second.pop_receipt, first.pop_receipt);

    // The first read's receipt no longer deletes it; the second's does, and again is fine.
    let err = queue.delete_message(&name, &first.id, &first.pop_receipt).await.unwrap_err();
    assert!(matches!(&err, QueueError::Conflict(m) if m == "delete message: PopReceiptMismatch"), "{err:?}");
    queue.delete_message(&name, &second.id, &second.pop_receipt).await.unwrap();
    queue.delete_message(&name, &second.id, &second.pop_receipt).await.unwrap();
    assert_eq!(queue.approximate_count(&name).await.unwrap(), 0);
    assert_eq!(queue.peek_messages(&name, 32).await.unwrap(), Vec::new());
}

#[tokio::test]
async fn a_delayed_message_stays_hidden_until_its_time() {
    let queue = azurite_queues().client();
    let name = fresh_queue();
    queue.ensure_queue(&name).await.unwrap();
    let started = Instant::now();
    let put = queue.put_message(&name, "later", Duration::from_secs(2)).await.unwrap();
    assert_eq!((put.next_visible_time - put.insertion_time).num_milliseconds(), 2000);
    assert_eq!(queue.get_messages(&name, 32, Duration::from_secs(30)).await.unwrap(), Vec::new());
    assert_eq!(queue.peek_messages(&name, 32).await.unwrap(), Vec::new());
    assert_eq!(queue.approximate_count(&name).await.unwrap(), 1);

    let (message, _) = first_visible(&queue, &name, Duration::from_secs(10)).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1900), "showed after {waited:?}");
    assert_eq!((&message.id, message.dequeue_count, message.text.as_str()), (&put.id, 1, "later"));
}

#[tokio::test]
async fn several_messages_are_read_at_once() {
    let queue = azurite_queues().client();
    let name = fresh_queue();
    for text in ["a", "b", "c"] {
        queue.put_message(&name, text, Duration::ZERO).await.unwrap();
    }
    let two = queue.get_messages(&name, 2, Duration::from_secs(60)).await.unwrap();
    assert_eq!(two.len(), 2);
    let rest = queue.get_messages(&name, 32, Duration::from_secs(60)).await.unwrap();
    let mut texts: Vec<_> = two.iter().chain(&rest).map(|m| m.text.as_str()).collect();
    texts.sort_unstable();
    assert_eq!(texts, ["a", "b", "c"]);
    assert!(two.iter().chain(&rest).all(|m| m.dequeue_count == 1));
}

#[tokio::test]
async fn a_message_of_exactly_64_kib_in_base64_is_taken() {
    let queue = azurite_queues().client();
    let name = fresh_queue();
    // 49,152 bytes are 65,536 in base64.
    let text = "é".repeat(MAX_MESSAGE_BYTES / 4 * 3 / 2);
    assert_eq!(STANDARD.encode(&text).len(), MAX_MESSAGE_BYTES);
    queue.put_message(&name, &text, Duration::ZERO).await.unwrap();
    let got = queue.get_messages(&name, 1, Duration::from_secs(60)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].text == text, "the text came back changed");
}

/// A fake Queue service that records every request and answers as `reply` says.
async fn recording(
    reply: fn(&FakeRequest) -> FakeReply,
) -> (QueueClient, Arc<Mutex<Vec<FakeRequest>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let (addr, server) = serve(Arc::new(move |req: FakeRequest| {
        let log = Arc::clone(&log);
        Box::pin(async move {
            let answer = reply(&req);
            log.lock().unwrap().push(req);
            answer
        })
    }))
    .await;
    let key = SharedKey::new(DEV_STORAGE_ACCOUNT, DEV_STORAGE_KEY, Arc::new(elevate::clock::SystemClock)).unwrap();
    let retry = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
    let azure = AzureClient::with_signer(Signer::SharedKey(key), retry).unwrap();
    (QueueClient::new(azure, &format!("http://{addr}/{DEV_STORAGE_ACCOUNT}/")).unwrap(), seen, server)
}

#[tokio::test]
async fn limits_are_refused_before_anything_is_sent() {
    let (queue, seen, _server) = recording(|_| FakeReply::empty(500)).await;
    let name = fresh_queue();
    let week = Duration::from_secs(7 * 24 * 3600);

    let err = queue.put_message(&name, "x", week + Duration::from_millis(1)).await.unwrap_err();
    assert!(
        matches!(&err, QueueError::Invalid(m) if m == "put message: a visibility timeout of 604801 s is outside 0–604800 s (7 days)"),
        "{err:?}"
    );
    let oversize = "x".repeat(MAX_MESSAGE_BYTES / 4 * 3 + 1);
    let err = queue.put_message(&name, &oversize, Duration::ZERO).await.unwrap_err();
    assert!(
        matches!(&err, QueueError::Invalid(m) if m == "put message: the message is 65540 bytes in base64; a queue takes 65536 (64 KiB)"),
        "{err:?}"
    );
    let err = queue.get_messages(&name, 33, Duration::from_secs(30)).await.unwrap_err();
    assert!(
        matches!(&err, QueueError::Invalid(m) if m == "get messages: 33 messages asked for; a read returns 1 to 32"),
        "{err:?}"
    );
    assert!(matches!(queue.get_messages(&name, 0, Duration::from_secs(30)).await, Err(QueueError::Invalid(_))));
    assert!(matches!(queue.get_messages(&name, 1, Duration::ZERO).await, Err(QueueError::Invalid(_))));
    assert!(matches!(queue.get_messages(&name, 1, week + Duration::from_secs(1)).await, Err(QueueError::Invalid(_))));
    assert!(matches!(queue.peek_messages(&name, 33).await, Err(QueueError::Invalid(_))));
    assert_eq!(seen.lock().unwrap().len(), 0, "nothing was sent");

    // The fake does answer: what is allowed is sent (and its 500 is transient).
    let err = queue.put_message(&name, "x", week).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn queue_names_follow_the_service_rules() {
    for good in ["abc", "revocations", "notices-2", "0-a-9", &"a".repeat(63)] {
        assert_eq!(QueueName::parse(good).unwrap().as_str(), good);
    }
    for bad in ["ab", "Abc", "a--b", "-ab", "ab-", "a_b", "a.b", "a b", "ab\u{0}", "äbc", &"a".repeat(64)] {
        let err = QueueName::parse(bad).unwrap_err();
        assert!(matches!(&err, QueueError::Invalid(m) if m.contains("is not a queue name")), "{bad:?}: {err:?}");
    }
}

#[tokio::test]
async fn the_wire_format_is_the_documented_one() {
    fn reply(req: &FakeRequest) -> FakeReply {
        match req.method.as_str() {
            "PUT" => FakeReply::empty(201),
            _ => FakeReply::Respond {
                status: 201,
                headers: vec![("Content-Type".into(), "application/xml".into())],
                body: b"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<QueueMessagesList>\n  <QueueMessage>\n    <MessageId>5974b586-0df3-4e2d-ad0c-18e3892bfca2</MessageId>\n    <InsertionTime>Wed, 25 Nov 2026 12:34:03 GMT</InsertionTime>\n    <ExpirationTime>Fri, 31 Dec 9999 23:59:59 GMT</ExpirationTime>\n    <PopReceipt>AgAAAAMAAAAAAAAA+/xl=</PopReceipt>\n    <TimeNextVisible>Wed, 25 Nov 2026 12:34:05 GMT</TimeNextVisible>\n  </QueueMessage>\n</QueueMessagesList>".to_vec(),
            },
        }
    }
    let (queue, seen, _server) = recording(reply).await;
    let name = QueueName::parse("revocations").unwrap();
    let put = queue.put_message(&name, "{\"grant\":\"g1\"}", Duration::from_millis(1500)).await.unwrap();
    assert_eq!(put.id.as_str(), "5974b586-0df3-4e2d-ad0c-18e3892bfca2");
    assert_eq!(put.pop_receipt.as_str(), "AgAAAAMAAAAAAAAA+/xl=");
    assert_eq!(put.insertion_time.to_rfc3339(), "2026-11-25T12:34:03+00:00");
    assert_eq!(put.next_visible_time.to_rfc3339(), "2026-11-25T12:34:05+00:00");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let (create, post) = (&seen[0], &seen[1]);
    assert_eq!(
        (create.method.as_str(), create.path.as_str(), create.raw_query.as_str()),
        ("PUT", "/devstoreaccount1/revocations", "")
    );
    assert_eq!(post.method, "POST");
    assert_eq!(post.path, "/devstoreaccount1/revocations/messages");
    // 1.5 s is rounded up: never shown before it was asked to be.
    assert_eq!(post.raw_query, "visibilitytimeout=2&messagettl=-1");
    assert_eq!(
        String::from_utf8(post.body.clone()).unwrap(),
        "<QueueMessage><MessageText>eyJncmFudCI6ImcxIn0=</MessageText></QueueMessage>"
    );
    for req in [create, post] {
        assert_eq!(req.header("x-ms-version"), Some("2021-12-02"));
        assert!(req.header("x-ms-date").is_some_and(|d| d.ends_with(" GMT")));
        assert!(req.header("x-ms-client-request-id").is_some());
        assert!(req.header("authorization").is_some_and(|a| a.starts_with("SharedKey devstoreaccount1:")));
    }
    assert_eq!(post.header("content-type"), Some("application/xml"));
    assert_eq!(post.header("content-length"), Some("76"));
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_never_shown() {
    let wrong = STANDARD.encode([7u8; 64]);
    let queue = azurite_queues().client_with_key(&wrong, RetryPolicy::default());
    let name = fresh_queue();
    let err = queue.put_message(&name, "x", Duration::ZERO).await.unwrap_err();
    let QueueError::Failed(message) = &err else { panic!("{err:?}") };
    // Azurite's wording (sic: no space after the first sentence).
    assert_eq!(
        message,
        "create queue: HTTP 403 AuthenticationFailed Server failed to authenticate the request.Make sure the value of the Authorization header is formed correctly including the signature."
    );
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(&wrong) && !shown.contains(DEV_STORAGE_KEY), "{shown}");
    }
    // Nothing was created with the wrong key.
    assert!(matches!(
        azurite_queues().client().get_messages(&name, 1, Duration::from_secs(1)).await,
        Err(QueueError::NotFound(_))
    ));
}
