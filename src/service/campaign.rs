//! Access reviews (`domain::review`): campaigns started, reminded and applied by the governance
//! pass; reviewers deciding item by item; results exported as CSV and as a patch to the policy
//! file.
//!
//! Records: a campaign (`review-campaign`, id the campaign id), one record per item
//! (`review-item`, `<campaign>.<index>`), one per removed eligibility (`suspension`,
//! `<rule>.<entry>`), and the review log (`review-log`), written once per line and never
//! rewritten. A suspension is written before anything else a removal does, and every policy
//! decision from then on sees it (`effective_policy`): the removal takes effect without editing
//! the YAML. A campaign stays `Applying` until every open activation from a removed eligibility
//! has ended, so a pass that fails half-way is finished by the next.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::activation::{Action, Activation, State, Status};
use crate::domain::audit::Actor;
use crate::domain::ids::{Justification, PrincipalId, PrincipalRef, RuleId};
use crate::domain::policy::{Period, Policy, ReviewDefinition, Reviewers};
use crate::domain::review::{
    self, Campaign, CampaignId, CampaignState, ItemDecision, ReviewItem, ReviewRefusal, Verdict,
};

use super::ports::{ActivationQuery, AuditQuery, Caller, RecordId, RecordKind, StoreError, Version, Versioned};
use super::{Elevate, MAX_LIST, ServiceError};

/// Campaign records one read lists (every run of every review).
const MAX_CAMPAIGNS: usize = 10_000;
/// Suspension records one read lists; reaching it is an error (none may be missed).
const MAX_SUSPENSIONS: usize = 100_000;
/// Log lines one read lists (every campaign's).
const MAX_LOG: usize = 200_000;
/// Item records read or written at once.
const PARALLEL: usize = 16;
/// Pages one pass reads (audit for recommendations, open activations to end).
const MAX_PAGES: usize = 200;

/// An eligibility an access review removed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Suspension {
    pub rule: RuleId,
    pub entry: PrincipalRef,
    pub campaign: CampaignId,
    pub at: DateTime<Utc>,
    /// An admin gave the eligibility back (a wrong removal, an incident); a later campaign may
    /// remove it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted: Option<Lifted>,
}

/// Who gave a removed eligibility back, when and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifted {
    pub by: PrincipalId,
    pub at: DateTime<Utc>,
    pub justification: Justification,
}

/// A campaign as the digest shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignSummary {
    pub id: String,
    pub review: String,
    pub ends: DateTime<Utc>,
    pub items: u32,
    pub undecided: u32,
}

/// One item as a caller sees it: whether they may decide on it now.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemView {
    #[serde(flatten)]
    pub item: ReviewItem,
    pub may_decide: bool,
    /// What the item comes to if the campaign ended now.
    pub outcome: Verdict,
}

/// A campaign with the items the caller may see.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignView {
    #[serde(flatten)]
    pub campaign: Campaign,
    pub description: Option<String>,
    pub items: Vec<ItemView>,
}

/// What one review pass did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewReport {
    pub started: Vec<String>,
    pub reminded: Vec<String>,
    pub applied: Vec<String>,
    /// Eligibilities suspended by this pass.
    pub suspended: usize,
    /// Open activations this pass ended because their eligibility was removed.
    pub ended: usize,
    /// Campaigns still applying (an activation could not be ended yet; the next pass retries).
    pub pending: Vec<String>,
    /// Campaigns this pass could not advance, and why (the next pass retries).
    pub failures: Vec<String>,
}

/// One line of a campaign's review log: written once, never rewritten (kind `review-log`, id
/// `<campaign>.<unix ms>.<sequence>.<random>`), so replaced decisions, suspensions and their lifting all
/// stay on record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum LogEntry {
    Decided { index: u32, rule: RuleId, entry: PrincipalRef, decision: ItemDecision },
    Suspended { rule: RuleId, entry: PrincipalRef },
    Lifted { rule: RuleId, entry: PrincipalRef, lifted: Lifted },
}

/// A log line with its campaign and time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub campaign: CampaignId,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub entry: LogEntry,
}

/// The decision a reviewer submits.
#[derive(Clone, Debug)]
pub struct ItemInput {
    pub verdict: Verdict,
    pub justification: Justification,
}

fn kind(name: &str) -> Result<RecordKind, ServiceError> {
    RecordKind::parse(name).map_err(|e| ServiceError::Internal(e.to_string()))
}

fn record_id(value: &str) -> Result<RecordId, ServiceError> {
    RecordId::parse(value).map_err(|e| ServiceError::Internal(format!("record id `{value}`: {e}")))
}

fn item_id(campaign: &CampaignId, index: u32) -> Result<RecordId, ServiceError> {
    record_id(&format!("{campaign}.{index:06}"))
}

fn suspension_id(rule: &RuleId, entry: &PrincipalRef) -> Result<RecordId, ServiceError> {
    record_id(&format!("{rule}.{entry}"))
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, body: &str) -> Result<T, ServiceError> {
    serde_json::from_str(body).map_err(|e| ServiceError::Internal(format!("{what} record cannot be read: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<String, ServiceError> {
    serde_json::to_string(value).map_err(|e| ServiceError::Internal(e.to_string()))
}

impl Elevate {
    /// The policy as it stands now: the file, less the eligibilities access reviews removed and
    /// no admin gave back. Every policy decision is taken against this.
    pub(super) async fn effective_policy(&self) -> Result<Arc<Policy>, ServiceError> {
        // Read even when the file declares no review any more: a removal stands until the file
        // drops the entry (the patch) or an admin lifts it.
        let suspensions = self.suspensions().await?;
        let mut live = suspensions.iter().filter(|s| s.lifted.is_none()).peekable();
        if live.peek().is_none() {
            return Ok(self.policy.clone());
        }
        Ok(Arc::new(self.policy.with_suspended(live.map(|s| (&s.rule, s.entry)))))
    }

    /// Every eligibility removed by an access review, lifted ones included.
    async fn suspensions(&self) -> Result<Vec<Suspension>, ServiceError> {
        let records = self.store.records(&kind("suspension")?, MAX_SUSPENSIONS).await?;
        if records.len() >= MAX_SUSPENSIONS {
            // More than one read holds: some would be ignored. Fail closed.
            return Err(ServiceError::Internal(format!("{MAX_SUSPENSIONS} or more suspension records")));
        }
        records.into_iter().map(|(_, r)| decode("a suspension", &r.value)).collect()
    }

    /// The eligibilities access reviews removed (auditors and admins).
    pub async fn list_suspensions(&self, caller: &Caller) -> Result<Vec<Suspension>, ServiceError> {
        if !caller.can_read_audit() {
            return Err(ServiceError::Forbidden("reading suspensions needs Elevate.Admin or Elevate.Auditor".into()));
        }
        self.suspensions().await
    }

    /// An admin gives back an eligibility a review removed: policy decisions allow it again at
    /// once. The suspension stays on record with who lifted it and why, and so does the log.
    #[tracing::instrument(skip_all, fields(caller = %caller.principal_id, rule = %rule, entry = %entry))]
    pub async fn lift_suspension(
        &self,
        caller: &Caller,
        rule: &RuleId,
        entry: PrincipalRef,
        justification: Justification,
        now: DateTime<Utc>,
    ) -> Result<Suspension, ServiceError> {
        if !caller.is_admin() {
            return Err(ServiceError::Forbidden("lifting a suspension needs Elevate.Admin".into()));
        }
        let suspension_kind = kind("suspension")?;
        let id = suspension_id(rule, &entry)?;
        let not_found = || ServiceError::SuspensionNotFound(format!("{rule}.{entry}"));
        let stored = self.store.record(&suspension_kind, &id).await?.ok_or_else(not_found)?;
        let mut suspension: Suspension = decode("a suspension", &stored.value)?;
        if suspension.lifted.is_some() {
            return Err(not_found());
        }
        let lifted = Lifted { by: caller.principal_id, at: now, justification };
        suspension.lifted = Some(lifted.clone());
        self.store.put_record(&suspension_kind, &id, &encode(&suspension)?, Some(&stored.version)).await?;
        tracing::warn!("an admin lifted an access review's removal; the eligibility is back");
        self.log_review(&suspension.campaign, now, LogEntry::Lifted { rule: rule.clone(), entry, lifted }).await?;
        Ok(suspension)
    }

    /// One review pass (from the governance pass): start the runs that are due, remind
    /// reviewers near the end, apply what ended. Idempotent: a second pass at the same `now`
    /// does nothing new. Campaigns of reviews no longer in the file are still finished.
    #[tracing::instrument(skip_all, fields(now = %now))]
    pub async fn review_pass(&self, now: DateTime<Utc>) -> Result<ReviewReport, ServiceError> {
        let mut report = ReviewReport::default();
        let campaigns = self.campaign_records().await?;
        for review in self.policy.reviews() {
            if let Some(period) = review.period_at(now) {
                let id = CampaignId::of(&review.id, &period);
                if campaigns.contains_key(&id) {
                    continue;
                }
                match self.start_campaign(review, &id, &period, now).await {
                    Ok(true) => report.started.push(id.to_string()),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(campaign = %id, error = %e, "an access review could not start; the next pass retries");
                        report.failures.push(format!("{id}: {e}"));
                    }
                }
            }
        }
        // One campaign that cannot be handled never holds up the others.
        for (id, stored) in campaigns {
            if let Err(e) = self.advance_campaign(stored, now, &mut report).await {
                tracing::error!(campaign = %id, error = %e, "an access review campaign could not be advanced; the next pass retries");
                report.failures.push(format!("{id}: {e}"));
            }
        }
        tracing::info!(report = ?report, "review pass finished");
        Ok(report)
    }

    /// Reminds, ends or finishes applying one campaign, as `now` demands.
    async fn advance_campaign(
        &self,
        stored: Versioned<Campaign>,
        now: DateTime<Utc>,
        report: &mut ReviewReport,
    ) -> Result<(), ServiceError> {
        let campaign = stored.value;
        let review = self.policy.review(&campaign.review);
        match &campaign.state {
            CampaignState::Open if now >= campaign.ends => {
                let ended = Campaign { state: CampaignState::Applying { ended_at: now }, ..campaign };
                if let Some(version) = self.write_campaign(&ended, Some(&stored.version)).await? {
                    self.apply_results(ended, version, now, report).await?;
                }
            }
            CampaignState::Open => {
                if let Some(review) = review.filter(|r| campaign.reminder_due(r.remind_before, now)) {
                    let reminded = Campaign { reminded_at: Some(now), ..campaign };
                    if self.write_campaign(&reminded, Some(&stored.version)).await?.is_some() {
                        self.announce_campaign(review, &reminded, true, now).await?;
                        report.reminded.push(reminded.id.to_string());
                    }
                }
            }
            CampaignState::Applying { .. } => self.apply_results(campaign, stored.version, now, report).await?,
            CampaignState::Applied { .. } => {}
        }
        Ok(())
    }

    async fn campaign_records(&self) -> Result<HashMap<CampaignId, Versioned<Campaign>>, ServiceError> {
        let records = self.store.records(&kind("review-campaign")?, MAX_CAMPAIGNS).await?;
        if records.len() >= MAX_CAMPAIGNS {
            // Past the limit, a campaign not read would look new and be started again.
            return Err(ServiceError::Internal(format!("{MAX_CAMPAIGNS} or more campaign records")));
        }
        let mut out = HashMap::new();
        for (_, stored) in records {
            let campaign: Campaign = decode("a campaign", &stored.value)?;
            out.insert(campaign.id.clone(), Versioned { value: campaign, version: stored.version });
        }
        Ok(out)
    }

    /// Writes the campaign: `None` when another pass changed it first (its word stands).
    async fn write_campaign(
        &self,
        campaign: &Campaign,
        expected: Option<&Version>,
    ) -> Result<Option<Version>, ServiceError> {
        let id = record_id(campaign.id.as_str())?;
        match self.store.put_record(&kind("review-campaign")?, &id, &encode(campaign)?, expected).await {
            Ok(version) => Ok(Some(version)),
            Err(StoreError::Conflict) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Snapshots the items (every entry of the reviewed rules, with a recommendation), then the
    /// campaign record. Items first: a campaign that exists has all its items. `false` when
    /// another pass started it first.
    async fn start_campaign(
        &self,
        review: &ReviewDefinition,
        id: &CampaignId,
        period: &Period,
        now: DateTime<Utc>,
    ) -> Result<bool, ServiceError> {
        let history = self.last_activations(now - review.inactive_after).await?;
        let policy = self.effective_policy().await?;
        let last = |rule: &RuleId, entry: &PrincipalRef| history.get(&(rule.clone(), *entry)).copied();
        let items = review::items_of(review, &policy, id, last, now);
        let item_kind = kind("review-item")?;
        for chunk in items.chunks(PARALLEL) {
            let mut writes = Vec::with_capacity(chunk.len());
            for item in chunk {
                writes.push(self.write_new_item(&item_kind, item));
            }
            futures_util::future::try_join_all(writes).await?;
        }
        let campaign = Campaign {
            id: id.clone(),
            review: review.id.clone(),
            starts: period.starts,
            ends: period.ends,
            items: u32::try_from(items.len()).unwrap_or(u32::MAX),
            when_undecided: review.when_undecided,
            state: CampaignState::Open,
            reminded_at: None,
        };
        if self.write_campaign(&campaign, None).await?.is_none() {
            return Ok(false);
        }
        tracing::info!(campaign = %id, items = items.len(), "access review started");
        self.announce_campaign(review, &campaign, false, now).await?;
        Ok(true)
    }

    /// When each `(rule, entry)` was last activated since `since`, from the audit (access that
    /// began: `Provisioned`). The event does not say through which entry: a user's own entry
    /// is credited when the rule names them, else every group entry of the rule (a
    /// recommendation, never a decision).
    async fn last_activations(
        &self,
        since: DateTime<Utc>,
    ) -> Result<HashMap<(RuleId, PrincipalRef), DateTime<Utc>>, ServiceError> {
        let mut out: HashMap<(RuleId, PrincipalRef), DateTime<Utc>> = HashMap::new();
        let mut query =
            AuditQuery { activation_id: None, principal_id: None, since: Some(since), limit: MAX_LIST, after: None };
        let mut note = |rule: &RuleId, entry: PrincipalRef, at: DateTime<Utc>| {
            let last = out.entry((rule.clone(), entry)).or_insert(at);
            if at > *last {
                *last = at;
            }
        };
        for _ in 0..MAX_PAGES {
            let page = self.store.audit(&query).await?;
            for e in page.items.iter().filter(|e| e.action == Action::Provisioned) {
                let Some(rule) = self.policy.rule(&e.rule_id) else { continue };
                let user = PrincipalRef::User(e.principal_id);
                if rule.principals.contains(&user) {
                    note(&rule.id, user, e.at);
                } else {
                    for g in rule.principals.iter().filter(|p| matches!(p, PrincipalRef::Group(_))) {
                        note(&rule.id, *g, e.at);
                    }
                }
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(out),
            }
        }
        Err(ServiceError::Internal(format!(
            "the audit since {since} holds more than {} events; recommendations were not made",
            MAX_PAGES * MAX_LIST
        )))
    }

    /// Ends the campaign: suspends each removed eligibility, ends the open activations from it,
    /// then marks the campaign applied. Stays `Applying` while any cannot be ended yet.
    async fn apply_results(
        &self,
        campaign: Campaign,
        version: Version,
        now: DateTime<Utc>,
        report: &mut ReviewReport,
    ) -> Result<(), ServiceError> {
        let items = self.items(&campaign).await?;
        // A review taken out of the file while its campaign ran is cancelled: its reviewers
        // could no longer decide, so nothing it holds is removed.
        let cancelled = self.policy.review(&campaign.review).is_none();
        if cancelled {
            tracing::warn!(campaign = %campaign.id, "the review is no longer in the policy; its campaign ends removing nothing");
        }
        let removals: Vec<(RuleId, PrincipalRef)> = items
            .iter()
            .map(|i| &i.value)
            .filter(|item| !cancelled && item.outcome(campaign.when_undecided).0 == Verdict::Remove)
            .map(|item| (item.rule.clone(), item.entry))
            .collect();
        let suspension_kind = kind("suspension")?;
        for (rule, entry) in &removals {
            let suspension =
                Suspension { rule: rule.clone(), entry: *entry, campaign: campaign.id.clone(), at: now, lifted: None };
            if self.suspend(&suspension_kind, &suspension).await? {
                tracing::warn!(campaign = %campaign.id, rule = %rule, entry = %entry, "access review removed an eligibility");
                report.suspended += 1;
            }
        }
        if !removals.is_empty() {
            let (ended, remaining) = self.end_removed(&campaign.id, &removals, now).await?;
            report.ended += ended;
            if remaining > 0 {
                tracing::warn!(campaign = %campaign.id, remaining, "open activations from removed eligibilities remain; the next pass ends them");
                report.pending.push(campaign.id.to_string());
                return Ok(());
            }
        }
        let ended_at = match campaign.state {
            CampaignState::Applying { ended_at } => ended_at,
            CampaignState::Open | CampaignState::Applied { .. } => now,
        };
        let removed = u32::try_from(removals.len()).unwrap_or(u32::MAX);
        let applied = Campaign {
            state: CampaignState::Applied {
                ended_at,
                applied_at: now,
                kept: campaign.items.saturating_sub(removed),
                removed,
            },
            ..campaign
        };
        if self.write_campaign(&applied, Some(&version)).await?.is_some() {
            tracing::info!(campaign = %applied.id, removed, "access review applied");
            report.applied.push(applied.id.to_string());
        }
        Ok(())
    }

    /// Appends a line to the campaign's review log.
    async fn log_review(&self, campaign: &CampaignId, at: DateTime<Utc>, entry: LogEntry) -> Result<(), ServiceError> {
        let line = LogLine { campaign: campaign.clone(), at, entry };
        // Ordered by time, then by this process's count (lines of one instant keep their
        // order), then a random part (two instances never collide).
        static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let id = record_id(&format!(
            "{campaign}.{:013}.{seq:012}.{}",
            at.timestamp_millis().max(0),
            nonce.get(..8).unwrap_or_default()
        ))?;
        self.store.put_record(&kind("review-log")?, &id, &encode(&line)?, None).await?;
        Ok(())
    }

    /// A campaign's review log, oldest first (auditors and admins).
    pub async fn review_log(&self, caller: &Caller, id: &CampaignId) -> Result<Vec<LogLine>, ServiceError> {
        let campaign = self.campaign_for_export(caller, id).await?;
        let prefix = format!("{}.", campaign.id);
        let records = self.store.records(&kind("review-log")?, MAX_LOG).await?;
        records
            .into_iter()
            .filter(|(rid, _)| rid.as_str().starts_with(&prefix))
            .map(|(_, r)| decode("a review log line", &r.value))
            .collect()
    }

    /// Writes a suspension: `false` when one is already in force (this campaign's, from an
    /// earlier pass, or another's). One lifted since is replaced: this campaign removed it again
    /// (the lifting stays in the log).
    async fn suspend(&self, suspension_kind: &RecordKind, suspension: &Suspension) -> Result<bool, ServiceError> {
        let id = suspension_id(&suspension.rule, &suspension.entry)?;
        let body = encode(suspension)?;
        let log = LogEntry::Suspended { rule: suspension.rule.clone(), entry: suspension.entry };
        match self.store.put_record(suspension_kind, &id, &body, None).await {
            Ok(_) => {}
            Err(StoreError::Conflict) => {
                let Some(stored) = self.store.record(suspension_kind, &id).await? else { return Ok(false) };
                let existing: Suspension = decode("a suspension", &stored.value)?;
                if existing.lifted.is_none() || existing.campaign == suspension.campaign {
                    return Ok(false);
                }
                self.store.put_record(suspension_kind, &id, &body, Some(&stored.version)).await?;
            }
            Err(e) => return Err(e.into()),
        }
        self.log_review(&suspension.campaign, suspension.at, log).await?;
        Ok(true)
    }

    /// Ends every open activation whose eligibility was removed: a pending or scheduled one is
    /// cancelled, an active one revoked (verified) then deactivated. Returns how many ended and
    /// how many remain (granting right now, the provider failed, or the scan was cut short: the
    /// next pass retries).
    async fn end_removed(
        &self,
        campaign: &CampaignId,
        removals: &[(RuleId, PrincipalRef)],
        now: DateTime<Utc>,
    ) -> Result<(usize, usize), ServiceError> {
        let mut query = ActivationQuery {
            principal_id: None,
            statuses: vec![Status::PendingApproval, Status::Scheduled, Status::Provisioning, Status::Active],
            limit: MAX_LIST,
            after: None,
            now,
        };
        let mut open: Vec<Activation> = Vec::new();
        let mut complete = false;
        for _ in 0..MAX_PAGES {
            let page = self.store.list(&query).await?;
            open.extend(page.items.into_iter().filter(|a| {
                let r = a.request();
                removals.iter().any(|(rule, entry)| &r.rule_id == rule && &r.eligible_via == entry)
            }));
            match page.next {
                Some(next) => query.after = Some(next),
                None => {
                    complete = true;
                    break;
                }
            }
        }
        let detail = |a: &Activation| {
            format!(
                "access review `{campaign}` removed eligibility `{}` under rule `{}`",
                a.request().eligible_via,
                a.request().rule_id
            )
        };
        let (mut ended, mut remaining) = (0, usize::from(!complete));
        for a in open {
            let id = a.id();
            let result = match a.state() {
                State::PendingApproval { .. } | State::Scheduled { .. } => self
                    .apply(id, &Actor::System, now, |x| Ok((x.cancel(now)?, None, Some(detail(&a)))))
                    .await
                    .map(|_| true),
                State::Active { .. } => match self.revoke_and_verify(&a, now).await {
                    Ok(()) => self
                        .apply(id, &Actor::System, now, |x| Ok((x.deactivate(now)?, None, Some(detail(&a)))))
                        .await
                        .map(|_| true),
                    Err(e) => {
                        tracing::error!(activation = %id, error = %e, "could not revoke access whose eligibility a review removed; retrying next pass");
                        Ok(false)
                    }
                },
                // Being granted now: ended by the next pass, once it is active.
                State::Provisioning { .. } => Ok(false),
                // Ended meanwhile: nothing left to end.
                State::Denied { .. }
                | State::Canceled { .. }
                | State::TimedOut { .. }
                | State::Expired { .. }
                | State::Deactivated { .. }
                | State::Failed { .. } => Ok(true),
            };
            match result {
                Ok(true) => ended += 1,
                Ok(false) => remaining += 1,
                // Moved on meanwhile (ended by its requester, expired): nothing left to end.
                Err(ServiceError::Transition(_)) => {}
                Err(e) => {
                    tracing::error!(activation = %id, error = %e, "could not end an activation whose eligibility a review removed; retrying next pass");
                    remaining += 1;
                }
            }
        }
        Ok((ended, remaining))
    }

    /// Writes an item of a new campaign. One already there was written by a pass that stopped
    /// before the campaign record: kept when it is the same eligibility, else replaced (the
    /// policy changed in between, and the campaign must review what this snapshot holds).
    async fn write_new_item(&self, item_kind: &RecordKind, item: &ReviewItem) -> Result<(), ServiceError> {
        let body = encode(item)?;
        let id = item_id(&item.campaign, item.index)?;
        match self.store.put_record(item_kind, &id, &body, None).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict) => {
                let existing = self.read_item(item_kind, &item.campaign, item.index).await?;
                if (&existing.value.rule, existing.value.entry) != (&item.rule, item.entry) {
                    self.store.put_record(item_kind, &id, &body, Some(&existing.version)).await?;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn read_item(
        &self,
        item_kind: &RecordKind,
        campaign: &CampaignId,
        index: u32,
    ) -> Result<Versioned<ReviewItem>, ServiceError> {
        let stored = self
            .store
            .record(item_kind, &item_id(campaign, index)?)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("campaign `{campaign}` is missing item {index}")))?;
        Ok(Versioned { value: decode("a review item", &stored.value)?, version: stored.version })
    }

    /// Every item of a campaign, in order.
    async fn items(&self, campaign: &Campaign) -> Result<Vec<Versioned<ReviewItem>>, ServiceError> {
        let item_kind = kind("review-item")?;
        let indexes: Vec<u32> = (0..campaign.items).collect();
        let mut items = Vec::with_capacity(indexes.len());
        for chunk in indexes.chunks(PARALLEL) {
            let mut reads = Vec::with_capacity(chunk.len());
            for index in chunk {
                reads.push(self.read_item(&item_kind, &campaign.id, *index));
            }
            items.extend(futures_util::future::try_join_all(reads).await?);
        }
        Ok(items)
    }

    async fn campaign(&self, id: &CampaignId) -> Result<Versioned<Campaign>, ServiceError> {
        let stored = self
            .store
            .record(&kind("review-campaign")?, &record_id(id.as_str())?)
            .await?
            .ok_or_else(|| ServiceError::CampaignNotFound(id.to_string()))?;
        Ok(Versioned { value: decode("a campaign", &stored.value)?, version: stored.version })
    }

    /// Whether the caller may see every campaign and item (auditors, admins).
    fn sees_all(caller: &Caller) -> bool {
        caller.can_read_audit()
    }

    /// The campaigns the caller reviews now (all of them for auditors and admins), newest first.
    pub async fn campaigns(&self, caller: &Caller, now: DateTime<Utc>) -> Result<Vec<Campaign>, ServiceError> {
        let subject = self.subject(caller).await?;
        let mut out: Vec<Campaign> = self
            .campaign_records()
            .await?
            .into_values()
            .map(|v| v.value)
            .filter(|c| {
                Self::sees_all(caller)
                    || (c.is_open(now)
                        && self.policy.review(&c.review).is_some_and(|r| {
                            review::reviews_any(r, &self.policy, &subject.principal_id, &subject.groups)
                        }))
            })
            .collect();
        out.sort_by(|a, b| b.starts.cmp(&a.starts).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// A campaign and the items the caller may see: all of them for auditors and admins, else
    /// those they may decide on. Someone who reviews nothing in it learns nothing of it (and
    /// costs no item reads).
    pub async fn campaign_view(
        &self,
        caller: &Caller,
        id: &CampaignId,
        now: DateTime<Utc>,
    ) -> Result<CampaignView, ServiceError> {
        let campaign = self.campaign(id).await?.value;
        let review = self.policy.review(&campaign.review);
        let subject = self.subject(caller).await?;
        let reviews_some =
            review.is_some_and(|r| review::reviews_any(r, &self.policy, &subject.principal_id, &subject.groups));
        if !reviews_some && !Self::sees_all(caller) {
            return Err(ServiceError::CampaignNotFound(id.to_string()));
        }
        let open = campaign.is_open(now);
        let mut items = Vec::new();
        for stored in self.items(&campaign).await? {
            let item = stored.value;
            let may = review.is_some_and(|r| {
                review::may_decide(r, &self.policy, &item, &subject.principal_id, &subject.groups).is_ok()
            });
            if may || Self::sees_all(caller) {
                let outcome = item.outcome(campaign.when_undecided).0;
                items.push(ItemView { item, may_decide: may && open, outcome });
            }
        }
        if items.is_empty() && !Self::sees_all(caller) {
            return Err(ServiceError::CampaignNotFound(id.to_string()));
        }
        Ok(CampaignView { description: review.and_then(|r| r.description.clone()), campaign, items })
    }

    /// A reviewer decides on one item, with a justification. Re-checked against the stored item
    /// on every attempt. The reviewer's decision replaces their earlier one on the item (the
    /// latest decision counts) and is appended to the review log.
    #[tracing::instrument(skip_all, fields(caller = %caller.principal_id, campaign = %id, item = index))]
    pub async fn decide_item(
        &self,
        caller: &Caller,
        id: &CampaignId,
        index: u32,
        input: ItemInput,
        now: DateTime<Utc>,
    ) -> Result<ReviewItem, ServiceError> {
        let hidden = || ServiceError::ReviewItemNotFound { campaign: id.to_string(), index };
        let campaign = self.campaign(id).await?.value;
        let subject = self.subject(caller).await?;
        // A campaign whose review left the file has no reviewers any more.
        let review = self.policy.review(&campaign.review).ok_or_else(hidden)?;
        if index >= campaign.items {
            return Err(hidden());
        }
        let item_kind = kind("review-item")?;
        let record = item_id(id, index)?;
        for _ in 0..super::MAX_ATTEMPTS {
            let stored = self.store.record(&item_kind, &record).await?.ok_or_else(hidden)?;
            let mut item: ReviewItem = decode("a review item", &stored.value)?;
            if let Err(refusal) =
                review::may_decide(review, &self.policy, &item, &subject.principal_id, &subject.groups)
            {
                // Someone who may not decide learns nothing of the item.
                return Err(match refusal {
                    ReviewRefusal::NotReviewer => hidden(),
                    other => other.into(),
                });
            }
            // Read again: a pass may have ended the campaign since this request began.
            // Keeping privileged eligibility is an approver's act: their rule's MFA demand holds.
            if matches!(review.reviewers, Reviewers::Approvers)
                && let Some(rule) = self.policy.rule(&item.rule)
                && rule.approval.as_ref().is_some_and(|a| a.approver_mfa)
                && !subject.mfa
            {
                return Err(crate::domain::approver::ApproverDenied::MfaRequired(rule.id.to_string()).into());
            }
            if !campaign.is_open(now) || !self.campaign(id).await?.value.is_open(now) {
                return Err(ReviewRefusal::Ended(id.clone()).into());
            }
            let decision = ItemDecision {
                verdict: input.verdict,
                by: caller.principal_id,
                at: now,
                justification: input.justification.clone(),
            };
            item.decide(decision.clone());
            match self.store.put_record(&item_kind, &record, &encode(&item)?, Some(&stored.version)).await {
                Ok(_) => {
                    tracing::info!(verdict = input.verdict.as_str(), "review decision recorded");
                    let log = LogEntry::Decided { index, rule: item.rule.clone(), entry: item.entry, decision };
                    self.log_review(id, now, log).await?;
                    return Ok(item);
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Contention)
    }

    /// The results of a campaign as CSV (auditors and admins).
    pub async fn campaign_csv(&self, caller: &Caller, id: &CampaignId) -> Result<String, ServiceError> {
        let campaign = self.campaign_for_export(caller, id).await?;
        let items: Vec<ReviewItem> = self.items(&campaign).await?.into_iter().map(|v| v.value).collect();
        Ok(review::results_csv(&items, campaign.when_undecided))
    }

    /// The patch that makes a campaign's removals permanent in the policy file (auditors and
    /// admins; once the campaign has ended): what it suspended and no admin gave back.
    pub async fn campaign_patch(
        &self,
        caller: &Caller,
        id: &CampaignId,
        now: DateTime<Utc>,
    ) -> Result<String, ServiceError> {
        let campaign = self.campaign_for_export(caller, id).await?;
        if campaign.is_open(now) {
            return Err(ServiceError::Forbidden(format!(
                "campaign `{id}` is still open; its patch is made once it has ended"
            )));
        }
        let removals: Vec<(RuleId, PrincipalRef)> = self
            .suspensions()
            .await?
            .into_iter()
            .filter(|s| s.campaign == campaign.id && s.lifted.is_none())
            .map(|s| (s.rule, s.entry))
            .collect();
        let (file, text) = self.policy.source();
        let name = std::path::Path::new(file).file_name().and_then(|n| n.to_str()).unwrap_or("policy.yaml");
        Ok(review::policy_patch(name, text, &removals))
    }

    async fn campaign_for_export(&self, caller: &Caller, id: &CampaignId) -> Result<Campaign, ServiceError> {
        if !Self::sees_all(caller) {
            return Err(ServiceError::Forbidden(
                "review results and logs need Elevate.Admin or Elevate.Auditor".into(),
            ));
        }
        Ok(self.campaign(id).await?.value)
    }

    /// Open campaigns with what is still undecided (for the digest).
    pub async fn reviews_due(&self, now: DateTime<Utc>) -> Result<Vec<CampaignSummary>, ServiceError> {
        let mut out = Vec::new();
        for stored in self.campaign_records().await?.into_values() {
            let c = stored.value;
            if !c.is_open(now) {
                continue;
            }
            let items = self.items(&c).await?;
            let undecided = items.iter().filter(|i| i.value.decisions.is_empty()).count();
            out.push(CampaignSummary {
                id: c.id.to_string(),
                review: c.review.to_string(),
                ends: c.ends,
                items: c.items,
                undecided: u32::try_from(undecided).unwrap_or(u32::MAX),
            });
        }
        out.sort_by(|a, b| a.ends.cmp(&b.ends).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Tells reviewers a campaign started (or, `reminder`, that it ends soon): a bulletin to the
    /// notice sinks, linking to the campaign's page.
    async fn announce_campaign(
        &self,
        review: &ReviewDefinition,
        campaign: &Campaign,
        reminder: bool,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        use crate::domain::notification::{Bulletin, BulletinKind};
        let items = self.items(campaign).await?;
        let undecided = items.iter().filter(|i| i.value.decisions.is_empty()).count();
        let reviewers = match &review.reviewers {
            Reviewers::Named(named) => named.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            Reviewers::Approvers => "each rule's approvers".to_owned(),
            Reviewers::SelfReview => "each principal, of their own eligibility".to_owned(),
        };
        let ends = campaign.ends.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (kind, id, title) = if reminder {
            (
                BulletinKind::ReviewReminder,
                format!("review-reminder-{}", campaign.id),
                format!(
                    "Access review {} ends at {ends}: {undecided} of {} items undecided",
                    campaign.id, campaign.items
                ),
            )
        } else {
            (
                BulletinKind::ReviewStarted,
                format!("review-started-{}", campaign.id),
                format!("Access review {} started: {} items to review by {ends}", campaign.id, campaign.items),
            )
        };
        let mut lines = Vec::new();
        for rule in &review.rules {
            let of_rule = items.iter().filter(|i| &i.value.rule == rule);
            let (count, recommended) = of_rule
                .fold((0, 0), |(n, r), i| (n + 1, r + usize::from(i.value.recommendation.verdict == Verdict::Remove)));
            lines.push(format!("rule {rule}: {count} eligibilities, {recommended} recommended for removal"));
        }
        let bulletin = Bulletin {
            id,
            kind,
            title,
            lines,
            facts: vec![
                ("Review".into(), review.id.to_string()),
                ("Reviewers".into(), reviewers),
                ("Ends".into(), ends),
                ("Undecided".into(), format!("{undecided} of {}", campaign.items)),
                ("If undecided".into(), campaign.when_undecided.as_str().to_owned()),
            ],
            path: format!("/api/portal/reviews/{}", campaign.id),
            at: now,
        };
        self.announce(bulletin, now).await;
        Ok(())
    }
}
