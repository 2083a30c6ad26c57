//! Revocation on time and notices without delay through Storage queues, on Azurite's queue
//! service. A harness plays the Functions host: it reads the queue, posts each message to the
//! queue function as the host does in payload mode, deletes it on 2xx, lets it show again
//! otherwise, and after the fifth failed delivery moves it to `<queue>-poison`.
//!
//! Elevate runs on the test's manual clock, the queue on real time: the app's queue port is the
//! real `StorageQueues` with its delays compressed (an hour of the app's time is a second of the
//! queue's), and the tests move the manual clock as the messages come due.

use std::sync::Arc;
use std::time::{Duration, Instant};

use elevate::adapters::queue::{QueueClient, QueueName};
use elevate::adapters::work_queue::StorageQueues;
use elevate::service::ports::{Queue, QueueError, WorkQueue};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::azurite::azurite_queues;
use crate::support::fake_webhook::FakeWebhook;
use crate::support::*;

/// The real queues, each delay divided by `factor`; a message waits at most `max_delay` of the
/// app's time (Storage's 7 days unless a test shortens it).
struct Compressed {
    inner: StorageQueues,
    factor: u32,
    max_delay: Duration,
}

#[async_trait::async_trait]
impl Queue for Compressed {
    async fn put(&self, queue: WorkQueue, message: &str, delay: Duration) -> Result<(), QueueError> {
        assert!(delay <= self.max_delay, "{delay:?} is past the queue's maximum");
        self.inner.put(queue, message, delay / self.factor).await
    }

    fn max_delay(&self) -> Duration {
        self.max_delay
    }
}

/// One app's queues, named apart from every other test's.
struct Queues {
    client: QueueClient,
    prefix: String,
}

impl Queues {
    fn new() -> Self {
        Queues {
            client: azurite_queues().client(),
            prefix: format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        }
    }

    fn port(&self, factor: u32) -> Arc<dyn Queue> {
        self.port_with(factor, elevate::service::ports::MAX_QUEUE_DELAY)
    }

    fn port_with(&self, factor: u32, max_delay: Duration) -> Arc<dyn Queue> {
        let inner = StorageQueues::new(azurite_queues().client(), &self.prefix).unwrap();
        Arc::new(Compressed { inner, factor, max_delay })
    }

    fn name(&self, queue: &str) -> QueueName {
        QueueName::parse(&format!("{}{queue}", self.prefix)).unwrap()
    }

    /// Messages in the queue, visible or not.
    async fn count(&self, queue: &str) -> u64 {
        self.client.approximate_count(&self.name(queue)).await.unwrap_or(0)
    }
}

/// What the host did with one message.
#[derive(Debug)]
struct Delivery {
    status: u16,
    result: String,
    dequeue_count: u32,
    poisoned: bool,
}

/// The Functions host's queue listener, as far as Elevate can tell.
struct Host<'a> {
    app: &'a TestApp,
    queues: &'a Queues,
}

impl Host<'_> {
    /// One poll of `function`'s queue: every visible message is delivered once.
    async fn poll(&self, function: &str) -> Vec<Delivery> {
        let queue = self.queues.name(function);
        // Hidden briefly while handled: a failed message shows again a second later (the host's
        // `visibilityTimeout` after a failure, shortened for the test).
        let messages = self.queues.client.get_messages(&queue, 16, Duration::from_secs(1)).await.unwrap_or_default();
        let mut done = Vec::new();
        for m in messages {
            let payload = json!({
                "Data": {"msg": m.text},
                "Metadata": {
                    "DequeueCount": m.dequeue_count,
                    "ExpirationTime": m.expiration_time.to_rfc3339(),
                    "Id": m.id.as_str(),
                    "InsertionTime": m.insertion_time.to_rfc3339(),
                    "NextVisibleTime": m.next_visible_time.to_rfc3339(),
                    "PopReceipt": m.pop_receipt.as_str(),
                    "sys": {"MethodName": function, "UtcNow": m.insertion_time.to_rfc3339()}
                }
            });
            let res =
                self.app.client.post(format!("{}/{function}", self.app.base)).json(&payload).send().await.unwrap();
            let status = res.status().as_u16();
            let answer: Value = res.json().await.unwrap();
            assert!(answer["Logs"].is_array() && answer["Outputs"].is_object(), "{answer}");
            let result = answer["ReturnValue"]["result"].as_str().unwrap_or_default().to_owned();
            let mut poisoned = false;
            if (200..300).contains(&status) {
                self.queues.client.delete_message(&queue, &m.id, &m.pop_receipt).await.unwrap();
            } else if m.dequeue_count >= elevate::http::invoke::MAX_DEQUEUE_COUNT as u32 {
                let poison = QueueName::parse(&format!("{}-poison", queue.as_str())).unwrap();
                self.queues.client.put_message(&poison, &m.text, Duration::ZERO).await.unwrap();
                self.queues.client.delete_message(&queue, &m.id, &m.pop_receipt).await.unwrap();
                poisoned = true;
            }
            done.push(Delivery { status, result, dequeue_count: m.dequeue_count, poisoned });
        }
        done
    }

    /// Polls (every 100 ms, as a short `maxPollingInterval` would) until a message was delivered
    /// or `within` passed.
    async fn next(&self, function: &str, within: Duration) -> Vec<Delivery> {
        let started = Instant::now();
        loop {
            let done = self.poll(function).await;
            if !done.is_empty() || started.elapsed() > within {
                return done;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

const HOUR_PER_SECOND: u32 = 3600;

fn results(done: &[Delivery]) -> Vec<&str> {
    done.iter().map(|d| d.result.as_str()).collect()
}

#[tokio::test]
async fn access_ends_at_its_end_through_the_expiry_queue() {
    let queues = Queues::new();
    let app = spawn_with_queues(&test_policy(), None, None, queues.port(HOUR_PER_SECOND)).await;
    let host = Host { app: &app, queues: &queues };
    let a = app.activate(&app.token(ALICE), reader_sub1()).await;
    assert_eq!(a["status"], "Active");
    assert_eq!(queues.count("expiry").await, 1, "one message, invisible until the end");
    assert!(host.poll("expiry").await.is_empty(), "not before its end");
    app.advance(60);
    let done = host.next("expiry", Duration::from_secs(10)).await;
    assert_eq!(results(&done), ["settled: expired and revoked"], "{done:?}");
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Expired");
    assert!(app.assignments().await.is_empty());
    assert_eq!(queues.count("expiry").await, 0, "deleted once handled");
    let events: Vec<String> =
        app.audit_for(&id_of(&a)).await.iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(events.iter().filter(|e| *e == "Expired").count(), 1, "{events:?}");
}

#[tokio::test]
async fn stale_messages_for_extended_deactivated_and_revoked_activations_do_nothing() {
    let queues = Queues::new();
    let app = spawn_with_queues(&test_policy(), None, None, queues.port(HOUR_PER_SECOND)).await;
    let host = Host { app: &app, queues: &queues };
    let alice = app.token(ALICE);

    // Extended: the first end's message finds the end moved; the second revokes.
    let extended = app.activate(&alice, json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H"})).await;
    let (status, body) =
        app.post(&alice, &format!("/api/activations/{}/extend", id_of(&extended)), json!({"duration": "PT30M"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(queues.count("expiry").await, 2);
    app.advance(60);
    let done = host.next("expiry", Duration::from_secs(10)).await;
    assert_eq!(results(&done), ["stale: its end moved"], "{done:?}");
    assert_eq!(app.activation(&id_of(&extended)).await["status"], "Active");
    app.advance(30);
    let done = host.next("expiry", Duration::from_secs(10)).await;
    assert_eq!(results(&done), ["settled: expired and revoked"], "{done:?}");

    // Deactivated early, and revoked by the sweeper first: their messages find nothing to do.
    let ended = app.activate(&alice, json!({"roleDefinitionId": "Reader", "scope": SUB1, "duration": "PT1H"})).await;
    let (status, _) = app.post(&alice, &format!("/api/activations/{}/deactivate", id_of(&ended)), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let swept = app
        .activate(&alice, json!({"roleDefinitionId": "Contributor", "scope": format!("{SUB1}/resourceGroups/app"), "duration": "PT1H", "justification": "x"}))
        .await;
    app.advance(61);
    assert_eq!(app.sweep().await["expired"], 1);
    let before = app.snapshot();
    let mut done = Vec::new();
    let started = Instant::now();
    while done.len() < 2 && started.elapsed() < Duration::from_secs(10) {
        done.extend(host.next("expiry", Duration::from_secs(10)).await);
    }
    let mut got = results(&done);
    got.sort();
    assert_eq!(got, ["stale: not active and not due", "stale: not active and not due"], "{done:?}");
    assert_eq!(app.snapshot(), before, "a stale message changes nothing");
    assert_eq!(app.activation(&id_of(&swept)).await["status"], "Expired");
}

/// An activation lasts at most 24 hours, so Storage's 7-day limit on a message's delay is never
/// reached in production; the chain that handles a longer wait is proven at the same ratio with
/// a queue whose messages wait at most 7 hours and a 9-hour activation.
#[tokio::test]
async fn an_activation_longer_than_a_message_can_wait_chains_its_messages() {
    let policy = test_policy().replace(
        "  - id: chatops",
        &format!("  - id: long\n    scope: {SUB1}/resourceGroups/long\n    roles: [Reader]\n    principals: [user:{ALICE}]\n    maxDuration: PT12H\n    requireJustification: false\n  - id: chatops"),
    );
    let queues = Queues::new();
    let app =
        spawn_with_queues(&policy, None, None, queues.port_with(HOUR_PER_SECOND, Duration::from_secs(7 * 3600))).await;
    let host = Host { app: &app, queues: &queues };
    let long = format!("{SUB1}/resourceGroups/long");
    let a =
        app.activate(&app.token(ALICE), json!({"roleDefinitionId": "Reader", "scope": long, "duration": "PT9H"})).await;
    assert_eq!(a["expiresAt"], "2026-11-25T21:00:00Z");
    // The first message waits 7 hours at most: it comes early and puts itself back.
    app.advance(7 * 60);
    let done = host.next("expiry", Duration::from_secs(15)).await;
    assert_eq!(results(&done), ["not yet due: put back until 2026-11-25 21:00:00 UTC"], "{done:?}");
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Active");
    assert_eq!(queues.count("expiry").await, 1, "the chained message");
    app.advance(2 * 60);
    let done = host.next("expiry", Duration::from_secs(10)).await;
    assert_eq!(results(&done), ["settled: expired and revoked"], "{done:?}");
    assert_eq!(queues.count("expiry").await, 0);
}

#[tokio::test]
async fn a_dead_arm_leaves_the_message_to_be_retried_and_poisoned_while_the_sweeper_still_revokes() {
    let fake = crate::support::fake_azure::FakeAzure::start().await;
    let access = crate::support::arm::provider(&fake, crate::support::arm::fast_retry())
        as Arc<dyn elevate::service::ports::AccessProvider>;
    let queues = Queues::new();
    let app = spawn_with_queues(&test_policy(), Some(access), None, queues.port(HOUR_PER_SECOND)).await;
    let host = Host { app: &app, queues: &queues };
    let a = app.activate(&app.token(ALICE), reader_sub1()).await;
    assert_eq!(fake.assignments().len(), 1);
    app.advance(60);
    fake.fail_always("roleassignments", 500);
    let mut deliveries = Vec::new();
    let started = Instant::now();
    while !deliveries.iter().any(|d: &Delivery| d.poisoned) {
        assert!(started.elapsed() < Duration::from_secs(60), "never poisoned: {deliveries:?}");
        deliveries.extend(host.next("expiry", Duration::from_secs(5)).await);
    }
    assert_eq!(
        deliveries.iter().map(|d| (d.status, d.dequeue_count)).collect::<Vec<_>>(),
        [(500, 1), (500, 2), (500, 3), (500, 4), (500, 5)]
    );
    assert_eq!(queues.count("expiry").await, 0);
    assert_eq!(queues.count("expiry-poison").await, 1, "kept where someone looks");
    assert_eq!(fake.assignments().len(), 1, "ARM is down: still assigned");
    fake.heal("roleassignments");
    assert_eq!(app.sweep().await["expired"], 1, "the sweeper needs no queue");
    assert!(fake.assignments().is_empty());
    assert_eq!(app.activation(&id_of(&a)).await["status"], "Expired");
}

#[tokio::test]
async fn a_notice_is_delivered_inside_an_invocation_of_the_deliver_queue() {
    let hook = FakeWebhook::start().await;
    let notifications = elevate::config::NotificationSettings {
        teams: Some(elevate::adapters::notify::WebhookUrl::new(&hook.url("teams")).unwrap()),
        ..elevate::config::NotificationSettings::default()
    };
    let queues = Queues::new();
    let app = spawn_with_queues(&test_policy(), None, Some(notifications), queues.port(HOUR_PER_SECOND)).await;
    let host = Host { app: &app, queues: &queues };
    let pending = app.activate(&app.token(ALICE), prod_contributor()).await;
    assert_eq!(pending["status"], "PendingApproval");
    let done = host.next("deliver", Duration::from_secs(10)).await;
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].status, 200);
    assert!(done[0].result.starts_with("delivered "), "{done:?}");
    let cards = hook.wait_for("teams", 1).await;
    assert!(cards[0].to_string().contains(&id_of(&pending)), "the approval card");
}

#[tokio::test]
async fn a_queue_that_cannot_be_reached_never_fails_the_request() {
    // Nothing listens there: every put fails, after the port's bounded wait.
    let dead = {
        let key = elevate::adapters::azure::SharedKey::new(
            elevate::config::DEV_STORAGE_ACCOUNT,
            elevate::config::DEV_STORAGE_KEY,
            Arc::new(elevate::clock::SystemClock),
        )
        .unwrap()
        .for_service(elevate::adapters::azure::shared_key::Service::Queue);
        let client = elevate::adapters::azure::AzureClient::with_signer(
            elevate::adapters::azure::Signer::SharedKey(key),
            crate::support::arm::fast_retry(),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let queues = QueueClient::new(client, &format!("http://127.0.0.1:{port}/devstoreaccount1")).unwrap();
        Arc::new(StorageQueues::new(queues, "").unwrap()) as Arc<dyn Queue>
    };
    let app = spawn_with_queues(&test_policy(), None, None, dead).await;
    let started = Instant::now();
    let a = app.activate(&app.token(ALICE), reader_sub1()).await;
    assert_eq!(a["status"], "Active");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded: {:?}", started.elapsed());
    app.advance(60);
    assert_eq!(app.sweep().await["expired"], 1, "the sweeper catches up");
}
