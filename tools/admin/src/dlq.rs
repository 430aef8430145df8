//! `purse-admin dlq …`: the dead-letter queues of a stack, looked at and emptied by hand.
//!
//! A message lands in a dead-letter queue after its consumer failed it `maxReceiveCount` times.
//! Bodies are identifiers only (a webhook delivery id, a KYC id, a transaction id), by design,
//! so printing them shows no personal data. Every consumer is idempotent, so sending a message
//! back to its source queue (`redrive`) is always safe: a message whose work was done meanwhile
//! changes nothing the second time.
//!
//! The stack's queues are the SQS queues whose name starts with the stack prefix: by default the
//! prefix of the table `PURSE_TABLE` names (`purse-dev-PurseTable` → `purse-dev-`, as `make dev`
//! names resources; `purse-prod` → `purse-prod-`, as `template.yaml` names them in AWS), or
//! `--prefix`. Its dead-letter queues are those whose name ends in `DLQ` (`purse-dev-RewardsDLQ`)
//! or `-dlq` (`purse-prod-rewards-dlq`). A dead-letter queue's source is the queue whose
//! `RedrivePolicy` names it, or failing that the queue its name implies (`…-dlq` → `…`,
//! `…DLQ` → `…Queue`).

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;
use std::collections::BTreeSet;

/// How long a message received by `peek`, `redrive` or `discard` stays hidden from others; the
/// ones not moved or deleted are made visible again at once when the command ends.
const VISIBILITY_SECONDS: i32 = 30;

/// Most messages one `peek` prints.
const MAX_PEEK: usize = 100;

/// A `dlq` command, as parsed from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Every dead-letter queue of the stack with its depth and source.
    List { prefix: Option<String> },
    /// Up to `count` messages, left in the queue.
    Peek { dlq: String, count: usize, prefix: Option<String> },
    /// Every message (or just `message`) back to the source queue.
    Redrive { dlq: String, message: Option<String>, prefix: Option<String> },
    /// One message deleted, with a reason.
    Discard { dlq: String, message: String, reason: String, prefix: Option<String> },
}

/// The usage line of the `dlq` commands.
pub const USAGE: &str = "dlq list [--prefix <p>] | dlq peek <dlq-name> [n] [--prefix <p>] \
                         | dlq redrive <dlq-name> [--message <id>] [--prefix <p>] \
                         | dlq discard <dlq-name> <message-id> [--prefix <p>] --reason <text...>";

impl Command {
    /// Parses the arguments after `dlq`. Options (`--prefix`, `--message`) may come anywhere
    /// before `--reason`; everything after `--reason` is the reason.
    ///
    /// # Errors
    /// A message naming what is wrong, with [`USAGE`].
    pub fn parse(args: &[&str]) -> Result<Self, String> {
        let usage = |what: &str| format!("{what}\nusage: purse-admin {USAGE}");
        let (head, reason) = match args.iter().position(|a| *a == "--reason") {
            Some(at) => (&args[..at], Some(args[at + 1..].join(" "))),
            None => (args, None),
        };
        let mut positional = Vec::new();
        let mut prefix = None;
        let mut message = None;
        let mut rest = head.iter();
        while let Some(arg) = rest.next() {
            match *arg {
                "--prefix" => prefix = Some(rest.next().ok_or_else(|| usage("--prefix needs a value"))?.to_string()),
                "--message" => message = Some(rest.next().ok_or_else(|| usage("--message needs a value"))?.to_string()),
                other if other.starts_with("--") => return Err(usage(&format!("unknown option {other}"))),
                other => positional.push(other),
            }
        }
        let only = |allowed: bool, name: &str| {
            if allowed {
                Ok(())
            } else {
                Err(usage(&format!("{name} is not an option of this command")))
            }
        };
        let command = match positional.as_slice() {
            ["list"] => {
                only(message.is_none(), "--message")?;
                only(reason.is_none(), "--reason")?;
                Command::List { prefix }
            }
            ["peek", dlq, count @ ..] if count.len() <= 1 => {
                only(message.is_none(), "--message")?;
                only(reason.is_none(), "--reason")?;
                let count = match count.first() {
                    None => 10,
                    Some(n) => n
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PEEK).contains(n))
                        .ok_or_else(|| usage(&format!("n must be a whole number from 1 to {MAX_PEEK}")))?,
                };
                Command::Peek { dlq: (*dlq).to_owned(), count, prefix }
            }
            ["redrive", dlq] => {
                only(reason.is_none(), "--reason")?;
                Command::Redrive { dlq: (*dlq).to_owned(), message, prefix }
            }
            ["discard", dlq, id] => {
                only(message.is_none(), "--message")?;
                let reason = reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
                let reason = reason.ok_or_else(|| usage("discard needs --reason <text>"))?;
                Command::Discard { dlq: (*dlq).to_owned(), message: (*id).to_owned(), reason, prefix }
            }
            _ => return Err(usage("unknown dlq command")),
        };
        Ok(command)
    }
}

/// The stack prefix implied by the table's name: `purse-dev-PurseTable` (local, resources named
/// `<prefix><LogicalId>`) → `purse-dev-`; `purse-prod` (AWS, `purse-<stage>`) → `purse-prod-`.
pub fn stack_prefix(table: &str) -> String {
    match table.strip_suffix("PurseTable") {
        Some(prefix) => prefix.to_owned(),
        None => format!("{table}-"),
    }
}

/// Whether a queue name is a dead-letter queue's.
pub fn is_dlq(name: &str) -> bool {
    name.ends_with("DLQ") || name.ends_with("-dlq")
}

/// The source queue a dead-letter queue's name implies: `x-dlq` → `x`, `xDLQ` → `xQueue`.
pub fn source_name_guess(dlq: &str) -> Option<String> {
    if let Some(base) = dlq.strip_suffix("-dlq") {
        return Some(base.to_owned());
    }
    dlq.strip_suffix("DLQ").map(|base| format!("{base}Queue"))
}

/// A queue's full name: `name` as given when it already carries the prefix, else prefixed.
pub fn qualify(prefix: &str, name: &str) -> String {
    if name.starts_with(prefix) {
        name.to_owned()
    } else {
        format!("{prefix}{name}")
    }
}

/// The name at the end of a queue URL.
pub fn queue_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// The dead-letter queue ARN a `RedrivePolicy` attribute names.
pub fn dead_letter_target(redrive_policy: &str) -> Option<String> {
    let policy: serde_json::Value = serde_json::from_str(redrive_policy).ok()?;
    policy["deadLetterTargetArn"].as_str().map(str::to_owned)
}

/// Who runs the command, as recorded: `operator:<$USER>` or `operator:cli`.
fn operator() -> String {
    let user = std::env::var("USER").ok().filter(|u| !u.trim().is_empty());
    format!("operator:{}", user.as_deref().unwrap_or("cli"))
}

fn sdk<E: std::error::Error + 'static>(e: E) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(e).to_string()
}

/// Runs a `dlq` command. `table` is `PURSE_TABLE`, which gives the default prefix.
///
/// # Errors
/// A message for the operator; nothing was lost (a message is deleted from a dead-letter queue
/// only after it was sent to its source, or when discarding it).
pub async fn run(aws: &aws_config::SdkConfig, table: Option<String>, command: Command) -> Result<(), String> {
    let prefix = match &command {
        Command::List { prefix }
        | Command::Peek { prefix, .. }
        | Command::Redrive { prefix, .. }
        | Command::Discard { prefix, .. } => prefix.clone(),
    };
    let prefix = match (prefix, table) {
        (Some(p), _) => p,
        (None, Some(t)) => stack_prefix(&t),
        (None, None) => return Err("set PURSE_TABLE or give --prefix to name the stack".into()),
    };
    let stack = Stack::load(Client::new(aws), &prefix).await?;
    match command {
        Command::List { .. } => stack.list().await,
        Command::Peek { dlq, count, .. } => stack.peek(&stack.dlq(&dlq)?, count).await,
        Command::Redrive { dlq, message, .. } => stack.redrive(&stack.dlq(&dlq)?, message.as_deref()).await,
        Command::Discard { dlq, message, reason, .. } => stack.discard(&stack.dlq(&dlq)?, &message, &reason).await,
    }
}

/// One queue of the stack.
#[derive(Debug, Clone)]
struct Queue {
    name: String,
    url: String,
    arn: String,
    /// The dead-letter queue ARN its `RedrivePolicy` names.
    dead_letter_target: Option<String>,
}

/// The queues of one stack.
struct Stack {
    client: Client,
    prefix: String,
    queues: Vec<Queue>,
}

/// A message received from a dead-letter queue.
struct Received {
    id: String,
    receipt: String,
    body: String,
    receive_count: String,
    attributes: Option<std::collections::HashMap<String, aws_sdk_sqs::types::MessageAttributeValue>>,
}

impl Stack {
    async fn load(client: Client, prefix: &str) -> Result<Self, String> {
        let mut urls = Vec::new();
        let mut token = None;
        loop {
            let out = client
                .list_queues()
                .queue_name_prefix(prefix)
                .max_results(1000)
                .set_next_token(token)
                .send()
                .await
                .map_err(sdk)?;
            urls.extend(out.queue_urls().iter().cloned());
            token = out.next_token;
            if token.is_none() {
                break;
            }
        }
        let mut queues = Vec::new();
        for url in urls {
            let attrs = client
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .attribute_names(QueueAttributeName::RedrivePolicy)
                .send()
                .await
                .map_err(sdk)?
                .attributes
                .unwrap_or_default();
            queues.push(Queue {
                name: queue_name(&url).to_owned(),
                arn: attrs.get(&QueueAttributeName::QueueArn).cloned().unwrap_or_default(),
                dead_letter_target: attrs.get(&QueueAttributeName::RedrivePolicy).and_then(|p| dead_letter_target(p)),
                url,
            });
        }
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self { client, prefix: prefix.to_owned(), queues })
    }

    /// The dead-letter queue called `name` (with or without the prefix).
    fn dlq(&self, name: &str) -> Result<Queue, String> {
        let full = qualify(&self.prefix, name);
        self.queues.iter().find(|q| q.name == full && is_dlq(&q.name)).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.queues.iter().filter(|q| is_dlq(&q.name)).map(|q| q.name.as_str()).collect();
            format!("no dead-letter queue {full} under prefix {}; the stack's are: {known:?}", self.prefix)
        })
    }

    /// The queue whose redrive policy names `dlq`, or the one its name implies.
    fn source_of(&self, dlq: &Queue) -> Option<&Queue> {
        self.queues.iter().find(|q| q.dead_letter_target.as_deref() == Some(dlq.arn.as_str())).or_else(|| {
            let guess = source_name_guess(&dlq.name)?;
            self.queues.iter().find(|q| q.name == guess)
        })
    }

    async fn depth(&self, queue: &Queue) -> Result<(String, String), String> {
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(&queue.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(sdk)?
            .attributes
            .unwrap_or_default();
        let get = |n: &QueueAttributeName| attrs.get(n).cloned().unwrap_or_else(|| "?".into());
        Ok((
            get(&QueueAttributeName::ApproximateNumberOfMessages),
            get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    async fn list(&self) -> Result<(), String> {
        let dlqs: Vec<&Queue> = self.queues.iter().filter(|q| is_dlq(&q.name)).collect();
        if dlqs.is_empty() {
            return Err(format!("no dead-letter queue under prefix {} (is the stack's prefix right?)", self.prefix));
        }
        println!("{:<40} {:>9} {:>9}  source", "dead-letter queue", "messages", "in flight");
        for dlq in dlqs {
            let (visible, in_flight) = self.depth(dlq).await?;
            let source = self.source_of(dlq).map(|s| s.name.as_str()).unwrap_or("(none found)");
            println!("{:<40} {visible:>9} {in_flight:>9}  {source}", dlq.name);
        }
        Ok(())
    }

    /// Receives one batch (up to 10), hiding it for [`VISIBILITY_SECONDS`].
    async fn receive(&self, queue: &Queue) -> Result<Vec<Received>, String> {
        let out = self
            .client
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .visibility_timeout(VISIBILITY_SECONDS)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(sdk)?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| Received {
                receive_count: m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount).cloned())
                    .unwrap_or_else(|| "?".into()),
                id: m.message_id.unwrap_or_default(),
                receipt: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
                attributes: m.message_attributes,
            })
            .collect())
    }

    /// The next batch of messages not seen before (empty: the queue has nothing more).
    async fn next_batch(&self, queue: &Queue, seen: &mut BTreeSet<String>) -> Result<Vec<Received>, String> {
        let batch = self.receive(queue).await?;
        Ok(batch.into_iter().filter(|m| seen.insert(m.id.clone())).collect())
    }

    /// Makes received messages visible again at once (best effort: otherwise they reappear
    /// after [`VISIBILITY_SECONDS`]).
    async fn show_again(&self, queue: &Queue, messages: Vec<Received>) {
        for m in messages {
            let result = self
                .client
                .change_message_visibility()
                .queue_url(&queue.url)
                .receipt_handle(&m.receipt)
                .visibility_timeout(0)
                .send()
                .await;
            if let Err(e) = result {
                eprintln!("note: message {} stays hidden for up to {VISIBILITY_SECONDS} s: {}", m.id, sdk(e));
            }
        }
    }

    async fn peek(&self, dlq: &Queue, count: usize) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        let mut kept = Vec::new();
        while kept.len() < count {
            let batch = match self.next_batch(dlq, &mut seen).await {
                Ok(batch) if batch.is_empty() => break,
                Ok(batch) => batch,
                Err(e) => {
                    self.show_again(dlq, kept).await;
                    return Err(e);
                }
            };
            for m in batch {
                if kept.len() < count {
                    println!("{}  receive_count={}  body={}", m.id, m.receive_count, m.body);
                }
                kept.push(m);
            }
        }
        let shown = kept.len().min(count);
        self.show_again(dlq, kept).await;
        println!("{shown} message(s) shown from {}; all left in the queue", dlq.name);
        Ok(())
    }

    async fn redrive(&self, dlq: &Queue, only: Option<&str>) -> Result<(), String> {
        let source = self
            .source_of(dlq)
            .ok_or_else(|| format!("no queue's RedrivePolicy names {}, and none is named like its source", dlq.name))?
            .clone();
        let mut seen = BTreeSet::new();
        let mut kept = Vec::new();
        let mut moved = 0_usize;
        let mut found = false;
        let outcome = loop {
            let batch = match self.next_batch(dlq, &mut seen).await {
                Ok(batch) if batch.is_empty() => break Ok(()),
                Ok(batch) => batch,
                Err(e) => break Err(e),
            };
            let mut failed = None;
            for m in batch {
                if failed.is_some() || only.is_some_and(|id| id != m.id) {
                    kept.push(m);
                    continue;
                }
                found = true;
                match self.move_back(dlq, &source, &m).await {
                    Ok(()) => moved += 1,
                    Err(e) => {
                        failed = Some(e);
                        kept.push(m);
                    }
                }
            }
            if let Some(e) = failed {
                break Err(e);
            }
            if found && only.is_some() {
                break Ok(());
            }
        };
        self.show_again(dlq, kept).await;
        println!("{moved} message(s) moved from {} back to {}", dlq.name, source.name);
        outcome?;
        match only {
            Some(id) if !found => Err(format!("no message {id} in {}", dlq.name)),
            _ => Ok(()),
        }
    }

    /// Sends a dead letter back to its source queue, then deletes it from the dead-letter
    /// queue: a failure between the two leaves a copy in both, which the idempotent consumer
    /// absorbs; a message is never lost.
    async fn move_back(&self, dlq: &Queue, source: &Queue, m: &Received) -> Result<(), String> {
        self.client
            .send_message()
            .queue_url(&source.url)
            .message_body(&m.body)
            .set_message_attributes(m.attributes.clone())
            .send()
            .await
            .map_err(|e| format!("message {} not moved: {}", m.id, sdk(e)))?;
        self.client.delete_message().queue_url(&dlq.url).receipt_handle(&m.receipt).send().await.map_err(|e| {
            format!("message {} sent to {} but not deleted from {}: {}", m.id, source.name, dlq.name, sdk(e))
        })?;
        Ok(())
    }

    async fn discard(&self, dlq: &Queue, id: &str, reason: &str) -> Result<(), String> {
        let operator = operator();
        let mut seen = BTreeSet::new();
        let mut kept = Vec::new();
        let outcome = loop {
            let batch = match self.next_batch(dlq, &mut seen).await {
                Ok(batch) if batch.is_empty() => {
                    break Err(format!("no message {id} in {}; nothing discarded", dlq.name))
                }
                Ok(batch) => batch,
                Err(e) => break Err(e),
            };
            let (wanted, others): (Vec<Received>, Vec<Received>) = batch.into_iter().partition(|m| m.id == id);
            kept.extend(others);
            let Some(m) = wanted.into_iter().next() else { continue };
            let deleted = self.client.delete_message().queue_url(&dlq.url).receipt_handle(&m.receipt).send().await;
            if let Err(e) = deleted {
                kept.push(m);
                break Err(format!("message {id} not deleted: {}", sdk(e)));
            }
            tracing::warn!(
                dlq = %dlq.name,
                message_id = id,
                body = %m.body,
                receive_count = %m.receive_count,
                operator = %operator,
                reason,
                "dead letter discarded"
            );
            println!("discarded {id} from {} (body {}) by {operator}: {reason}", dlq.name, m.body);
            break Ok(());
        };
        self.show_again(dlq, kept).await;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The dead-letter queues of a list of queue names, each with the source its name implies
    /// (what `dlq list` falls back to when no redrive policy names it).
    fn dlqs_with_guessed_sources<'a>(names: &[&'a str]) -> BTreeMap<&'a str, Option<&'a str>> {
        names
            .iter()
            .filter(|n| is_dlq(n))
            .map(|dlq| (*dlq, source_name_guess(dlq).and_then(|g| names.iter().find(|n| **n == g).copied())))
            .collect()
    }

    #[test]
    fn the_stack_prefix_comes_from_the_table_name_locally_and_in_aws() {
        assert_eq!(stack_prefix("purse-dev-PurseTable"), "purse-dev-");
        assert_eq!(stack_prefix("t01abc-PurseTable"), "t01abc-");
        assert_eq!(stack_prefix("purse-prod"), "purse-prod-");
    }

    #[test]
    fn dead_letter_queues_are_found_by_name_with_their_sources() {
        let local = [
            "purse-dev-RevioEventsDLQ",
            "purse-dev-RevioEventsQueue",
            "purse-dev-RewardsDLQ",
            "purse-dev-RewardsQueue",
        ];
        let found = dlqs_with_guessed_sources(&local);
        assert_eq!(found.len(), 2);
        assert_eq!(found["purse-dev-RevioEventsDLQ"], Some("purse-dev-RevioEventsQueue"));
        let aws = ["purse-prod-payouts", "purse-prod-payouts-dlq", "purse-prod-kyc-events-dlq"];
        let found = dlqs_with_guessed_sources(&aws);
        assert_eq!(found["purse-prod-payouts-dlq"], Some("purse-prod-payouts"));
        assert_eq!(found["purse-prod-kyc-events-dlq"], None, "its source is not in the list");
        assert!(!is_dlq("purse-prod-dlq-watcher") && !is_dlq("purse-dev-RewardsQueue"));
    }

    #[test]
    fn a_queue_name_may_be_given_with_or_without_the_prefix() {
        assert_eq!(qualify("purse-dev-", "RewardsDLQ"), "purse-dev-RewardsDLQ");
        assert_eq!(qualify("purse-dev-", "purse-dev-RewardsDLQ"), "purse-dev-RewardsDLQ");
        assert_eq!(queue_name("http://127.0.0.1:4566/000000000000/purse-dev-RewardsDLQ"), "purse-dev-RewardsDLQ");
    }

    #[test]
    fn the_redrive_policy_names_the_dead_letter_queue() {
        let policy =
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:purse-dev-RewardsDLQ","maxReceiveCount":5}"#;
        assert_eq!(
            dead_letter_target(policy).as_deref(),
            Some("arn:aws:sqs:us-east-1:000000000000:purse-dev-RewardsDLQ")
        );
        assert_eq!(dead_letter_target("not json"), None);
    }

    #[test]
    fn dlq_commands_parse_with_their_options() {
        assert_eq!(Command::parse(&["list"]).unwrap(), Command::List { prefix: None });
        assert_eq!(
            Command::parse(&["list", "--prefix", "purse-prod-"]).unwrap(),
            Command::List { prefix: Some("purse-prod-".into()) }
        );
        assert_eq!(
            Command::parse(&["peek", "RewardsDLQ"]).unwrap(),
            Command::Peek { dlq: "RewardsDLQ".into(), count: 10, prefix: None }
        );
        assert_eq!(
            Command::parse(&["peek", "RewardsDLQ", "3"]).unwrap(),
            Command::Peek { dlq: "RewardsDLQ".into(), count: 3, prefix: None }
        );
        assert_eq!(
            Command::parse(&["redrive", "RewardsDLQ", "--message", "m-1"]).unwrap(),
            Command::Redrive { dlq: "RewardsDLQ".into(), message: Some("m-1".into()), prefix: None }
        );
        assert_eq!(
            Command::parse(&["discard", "RewardsDLQ", "m-1", "--reason", "poison", "message,", "ticket", "9"]).unwrap(),
            Command::Discard {
                dlq: "RewardsDLQ".into(),
                message: "m-1".into(),
                reason: "poison message, ticket 9".into(),
                prefix: None
            }
        );
        for bad in [
            &["discard", "RewardsDLQ", "m-1"][..],
            &["discard", "RewardsDLQ", "m-1", "--reason", "  "],
            &["peek", "RewardsDLQ", "0"],
            &["peek", "RewardsDLQ", "many"],
            &["list", "--message", "m-1"],
            &["redrive"],
            &["list", "--prefix"],
            &["purge", "RewardsDLQ"],
            &["list", "--force"],
        ] {
            assert!(Command::parse(bad).is_err(), "{bad:?}");
        }
    }
}
