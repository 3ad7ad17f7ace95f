//! The flow runners: one task per scheduled flow (poll, cron or webhook inbox), so two runs
//! of one flow never overlap. A run that fails is logged and counted; the flow keeps its
//! schedule. Each task stops at its stop signal, letting the current run commit its batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::DaemonState;
use super::events::{FlowRunCompleted, FlowRunFailed};
use crate::runtime::{FlowRun, RunOptions};
use crate::spec::model::{FailureMode, Trigger, Workspace};

/// How many inbox events one run consumes at most.
const INBOX_BATCH: usize = 100;
/// How often a webhook runner looks at its inbox even without a wake-up (retries failures).
const INBOX_RECHECK: Duration = Duration::from_secs(5);

/// The running flow tasks, by flow name.
#[derive(Default)]
pub(crate) struct Scheduler {
    tasks: IndexMap<String, FlowTask>,
}

struct FlowTask {
    trigger: Trigger,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Scheduler {
    /// Brings the tasks in line with `workspace`: stops removed flows and flows whose trigger
    /// changed, starts new ones. Unchanged flows keep running; their next run reads the new
    /// workspace. Returns the handles of stopped tasks (they finish their current batch).
    pub(crate) fn sync(
        &mut self,
        state: &Arc<DaemonState>,
        workspace: &Workspace,
    ) -> Vec<JoinHandle<()>> {
        let mut stopped = Vec::new();
        let names: Vec<String> = self.tasks.keys().cloned().collect();
        for name in names {
            let keep = trigger_of(workspace, &name).is_some_and(|trigger| {
                self.tasks.get(&name).is_some_and(|t| t.trigger == *trigger)
            });
            if !keep && let Some(task) = self.tasks.shift_remove(&name) {
                tracing::info!(flow = %name, "Flow stopped.");
                let _ = task.stop.send(true);
                stopped.push(task.handle);
            }
        }
        // Reconcile flows run on their own trigger too (a webhook trigger has no meaning
        // for them: validation leaves it to the operator, and its inbox is never read).
        let triggers = workspace
            .flows
            .iter()
            .map(|(name, flow)| (name, &flow.trigger))
            .chain(
                workspace
                    .reconciliations
                    .iter()
                    .map(|(name, r)| (name, &r.trigger)),
            );
        for (name, trigger) in triggers {
            if self.tasks.contains_key(name) || *trigger == Trigger::Manual {
                continue;
            }
            let (stop, stop_rx) = watch::channel(false);
            let handle = tokio::spawn(flow_task(
                Arc::clone(state),
                name.clone(),
                trigger.clone(),
                stop_rx,
            ));
            tracing::info!(flow = %name, trigger = %describe(trigger), "Flow scheduled.");
            self.tasks.insert(
                name.clone(),
                FlowTask {
                    trigger: trigger.clone(),
                    stop,
                    handle,
                },
            );
        }
        stopped
    }

    /// Signals every task to stop; returns their handles.
    pub(crate) fn stop_all(&mut self) -> Vec<JoinHandle<()>> {
        self.tasks
            .drain(..)
            .map(|(_, task)| {
                let _ = task.stop.send(true);
                task.handle
            })
            .collect()
    }
}

/// The trigger of a flow or reconcile flow of `workspace`.
fn trigger_of<'a>(workspace: &'a Workspace, name: &str) -> Option<&'a Trigger> {
    workspace
        .flows
        .get(name)
        .map(|flow| &flow.trigger)
        .or_else(|| workspace.reconciliations.get(name).map(|r| &r.trigger))
}

/// A trigger in words, for logs and the admin API.
pub(crate) fn describe(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Manual => "manual".into(),
        Trigger::Poll(every) => format!("poll {every:?}"),
        Trigger::Cron(cron) => format!("cron {} ({})", cron.expression, cron.timezone),
        Trigger::Webhook(path) => format!("webhook {path}"),
    }
}

async fn flow_task(
    state: Arc<DaemonState>,
    name: String,
    trigger: Trigger,
    mut stop: watch::Receiver<bool>,
) {
    match trigger {
        Trigger::Manual => {}
        Trigger::Poll(every) => {
            let mut ticker = tokio::time::interval(every.max(Duration::from_millis(10)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stop.changed() => break,
                }
                if *stop.borrow() {
                    break;
                }
                run_once(&state, &name, &stop).await;
            }
        }
        Trigger::Cron(cron) => {
            // Parsed and resolved at load.
            let (schedule, tz) = (&cron.schedule, &cron.tz);
            loop {
                let now = jiff::Timestamp::now();
                let Some(next) = next_fire(schedule, tz, now) else {
                    tracing::warn!(flow = %name, "Cron schedule has no future run; flow idle.");
                    break;
                };
                let wait = Duration::try_from(next.duration_since(now)).unwrap_or_default();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => break,
                }
                if *stop.borrow() {
                    break;
                }
                run_once(&state, &name, &stop).await;
            }
        }
        Trigger::Webhook(_) => {
            let wake = state.wake_handle(&name);
            loop {
                drain_inbox(&state, &name, &stop).await;
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(INBOX_RECHECK) => {}
                    _ = stop.changed() => break,
                }
                if *stop.borrow() {
                    break;
                }
            }
        }
    }
}

/// The next time strictly after `after` that `schedule` names, read in `tz`. The `cron`
/// crate works on chrono types; walking its field sets over jiff civil times avoids a second
/// date library and keeps DST handling in jiff (a time in a DST gap moves forward).
pub(crate) fn next_fire(
    schedule: &cron::Schedule,
    tz: &jiff::tz::TimeZone,
    after: jiff::Timestamp,
) -> Option<jiff::Timestamp> {
    use cron::TimeUnitSpec;
    let start = after.to_zoned(tz.clone()).date();
    for offset in 0..(366 * 5) {
        let day = start.checked_add(jiff::Span::new().days(offset)).ok()?;
        let weekday = u32::from(day.weekday().to_sunday_one_offset() as u8);
        if !(schedule.years().includes(day.year() as u32)
            && schedule.months().includes(day.month() as u32)
            && schedule.days_of_month().includes(day.day() as u32)
            && schedule.days_of_week().includes(weekday))
        {
            continue;
        }
        for hour in schedule.hours().iter() {
            for minute in schedule.minutes().iter() {
                for second in schedule.seconds().iter() {
                    let Ok(civil) = jiff::civil::DateTime::new(
                        day.year(),
                        day.month(),
                        day.day(),
                        hour as i8,
                        minute as i8,
                        second as i8,
                        0,
                    ) else {
                        continue;
                    };
                    if let Ok(zoned) = civil.to_zoned(tz.clone())
                        && zoned.timestamp() > after
                    {
                        return Some(zoned.timestamp());
                    }
                }
            }
        }
    }
    None
}

/// One run of a poll or cron flow, unless it is paused.
async fn run_once(state: &Arc<DaemonState>, name: &str, stop: &watch::Receiver<bool>) {
    if state.is_paused(name) {
        tracing::debug!(flow = %name, "Flow paused; run skipped.");
        return;
    }
    let _ = execute(state, name, false, stop).await;
}

/// Runs the flow over its pending inbox events until none is left. The run reads them itself
/// (the webhook intake source, [`crate::connectors::webhook`]), under the flow's lease, so two
/// daemons never take the same event; each batch's events are marked processed once the batch
/// is committed. After a failed run, the events that were pending and still are keep the
/// failure (`inbox_failed`) and are read again by the next run.
pub(super) async fn drain_inbox(
    state: &Arc<DaemonState>,
    name: &str,
    stop: &watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() || state.is_paused(name) {
            return;
        }
        let before = match state.store.inbox_pending(name, INBOX_BATCH).await {
            Ok(events) => events,
            Err(err) => {
                tracing::error!(flow = %name, error = %err, "Could not read the inbox.");
                return;
            }
        };
        if before.is_empty() {
            return;
        }
        let Err(error) = execute(state, name, true, stop).await else {
            continue;
        };
        let still = match state.store.inbox_pending(name, INBOX_BATCH).await {
            Ok(events) => events,
            Err(err) => {
                tracing::error!(flow = %name, error = %err, "Could not read the inbox.");
                return;
            }
        };
        let ids: Vec<i64> = still
            .iter()
            .map(|event| event.id)
            .filter(|id| before.iter().any(|event| event.id == *id))
            .collect();
        if let Err(err) = state.store.inbox_failed(&ids, &error).await {
            tracing::error!(flow = %name, error = %err, "Could not record an inbox failure.");
        }
        return;
    }
}

/// Runs the flow once against the current workspace and records the outcome.
async fn execute(
    state: &Arc<DaemonState>,
    name: &str,
    intake: bool,
    stop: &watch::Receiver<bool>,
) -> Result<(), String> {
    let workspace = state.workspace();
    if workspace.reconciliations.contains_key(name) {
        return reconcile(state, &workspace, name).await;
    }
    let options = RunOptions {
        progress: false,
        stop: Some(stop.clone()),
        deadlines: Some(state.deadlines.clone()),
        observer: crate::runtime::Observer::new(Arc::clone(&state.metrics)),
        intake,
        // Events per batch: each batch's events are marked processed as it commits.
        batch_size: if intake {
            INBOX_BATCH
        } else {
            RunOptions::default().batch_size
        },
        ..RunOptions::default()
    };
    let started = Instant::now();
    let result =
        match FlowRun::new(&workspace, name, state.store.clone(), options, None, None).await {
            Ok(run) => run.run().await,
            Err(err) => Err(err),
        };
    let elapsed = started.elapsed();
    match result {
        Ok(report) => {
            let owner_of = |failure: &str| {
                FailureMode::parse(failure)
                    .and_then(|mode| workspace.flows.get(name)?.failures.get(&mode))
                    .map(|route| route.owner.clone())
                    .unwrap_or_else(|| "unknown".into())
            };
            FlowRunCompleted {
                flow: name,
                report: &report,
                elapsed,
                owner_of: &owner_of,
            }
            .emit();
            let unsettled = report.unsettled;
            state.record_run(name, Ok(report));
            if unsettled > 0 {
                // Inbox events behind those records must stay pending, not be marked done.
                return Err(format!(
                    "{unsettled} record(s) left unsettled while the sink is down; they are \
                     read again on the next run"
                ));
            }
            Ok(())
        }
        Err(err) => {
            let error = err.to_string();
            FlowRunFailed {
                flow: name,
                error: &error,
                elapsed,
            }
            .emit(&state.metrics);
            state.record_run(name, Err(error.clone()));
            Err(error)
        }
    }
}

/// One run of a reconcile flow: its variances become dead letters (once), its gauges are set.
async fn reconcile(
    state: &Arc<DaemonState>,
    workspace: &Workspace,
    name: &str,
) -> Result<(), String> {
    let options = crate::reconcile::RunOptions {
        cycle: None,
        metrics: Some(Arc::clone(&state.metrics)),
    };
    let started = Instant::now();
    match crate::reconcile::run(workspace, name, &state.store, &options).await {
        Ok(outcome) => {
            let mut report = crate::runtime::RunReport {
                read: outcome.matched.statement_lines + outcome.matched.ledger_lines,
                dead_lettered: outcome.letters.created,
                ..crate::runtime::RunReport::default()
            };
            for variance in &outcome.matched.variances {
                *report
                    .by_failure
                    .entry(variance.kind.failure().as_str().to_owned())
                    .or_default() += 1;
            }
            state.record_run(name, Ok(report));
            Ok(())
        }
        Err(err) => {
            let error = err.to_string();
            FlowRunFailed {
                flow: name,
                error: &error,
                elapsed: started.elapsed(),
            }
            .emit(&state.metrics);
            state.record_run(name, Err(error.clone()));
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn next_fire_reads_the_schedule_in_its_time_zone() {
        let schedule = cron::Schedule::from_str("0 30 9 * * *").unwrap();
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let after: jiff::Timestamp = "2025-01-15T10:00:00Z".parse().unwrap();
        // 09:30 Paris (UTC+1 in winter) has passed today (11:00 Paris): tomorrow 08:30 UTC.
        let next = next_fire(&schedule, &paris, after).unwrap();
        assert_eq!(next.to_string(), "2025-01-16T08:30:00Z");
    }

    #[test]
    fn a_time_skipped_by_spring_forward_runs_once_at_the_shifted_time() {
        // 29 March 2026, Paris: 02:00 CET jumps to 03:00 CEST, so 02:30 never happens. The
        // daily run happens once that day, at 03:30 CEST (the gap's length later), and at
        // 02:30 CEST again the next day.
        let schedule = cron::Schedule::from_str("0 30 2 * * *").unwrap();
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let mut at: jiff::Timestamp = "2026-03-28T12:00:00Z".parse().unwrap();
        let mut fires = Vec::new();
        for _ in 0..3 {
            at = next_fire(&schedule, &paris, at).unwrap();
            fires.push(at.to_zoned(paris.clone()).to_string());
        }
        assert_eq!(
            fires,
            [
                "2026-03-29T03:30:00+02:00[Europe/Paris]",
                "2026-03-30T02:30:00+02:00[Europe/Paris]",
                "2026-03-31T02:30:00+02:00[Europe/Paris]",
            ]
        );
    }

    #[test]
    fn a_time_repeated_by_fall_back_runs_once() {
        // 25 October 2026, Paris: 03:00 CEST falls back to 02:00 CET, so 02:30 happens twice;
        // the daily run happens at the first only.
        let schedule = cron::Schedule::from_str("0 30 2 * * *").unwrap();
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let mut at: jiff::Timestamp = "2026-10-24T12:00:00Z".parse().unwrap();
        let mut fires = Vec::new();
        for _ in 0..2 {
            at = next_fire(&schedule, &paris, at).unwrap();
            fires.push(at.to_string());
        }
        assert_eq!(fires, ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]);
    }

    #[test]
    fn next_fire_is_strictly_after() {
        let schedule = cron::Schedule::from_str("*/10 * * * * *").unwrap();
        let after: jiff::Timestamp = "2025-01-15T10:00:00Z".parse().unwrap();
        let next = next_fire(&schedule, &jiff::tz::TimeZone::UTC, after).unwrap();
        assert_eq!(next.to_string(), "2025-01-15T10:00:10Z");
    }
}
