//! The service's `Queue` port on Azure Storage queues (`queue::QueueClient`): one queue per kind
//! of work, named as the queue-triggered functions that read them (`functions/expiry`,
//! `functions/deliver`) and as `infra/` creates them.

use async_trait::async_trait;

use crate::service::ports::{Queue, QueueError, WorkQueue};

use super::queue::{QueueClient, QueueName};

pub struct StorageQueues {
    client: QueueClient,
    expiry: QueueName,
    deliver: QueueName,
}

impl StorageQueues {
    /// `prefix` is empty in production (the functions read `expiry` and `deliver`); tests that
    /// share one emulator give each app its own.
    pub fn new(client: QueueClient, prefix: &str) -> Result<Self, String> {
        let name = |q: WorkQueue| QueueName::parse(&format!("{prefix}{}", q.name())).map_err(|e| e.to_string());
        Ok(Self { client, expiry: name(WorkQueue::Expiry)?, deliver: name(WorkQueue::Deliver)? })
    }

    /// The client, for diagnostics and tests that read the queues as the host does.
    pub fn client(&self) -> &QueueClient {
        &self.client
    }
}

#[async_trait]
impl Queue for StorageQueues {
    async fn put(&self, queue: WorkQueue, message: &str, delay: std::time::Duration) -> Result<(), QueueError> {
        let name = match queue {
            WorkQueue::Expiry => &self.expiry,
            WorkQueue::Deliver => &self.deliver,
        };
        self.client.put_message(name, message, delay).await.map(|_| ()).map_err(|e| QueueError(e.to_string()))
    }
}
