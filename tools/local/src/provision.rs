//! Creates the tables, queues and secrets `template.yaml` declares, in the emulator, under a
//! name prefix — so that `make dev` gets one stack and every test gets a fresh one.

use crate::template::{reference_target, FunctionSpec, Template, TemplateError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use purse::config::Env;
use serde_yaml::Value;
use std::collections::{BTreeMap, HashMap};

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{0}")]
    Aws(String),
    #[error("no local value for secret {0}; add one in purse_local::provision::local_secret_value")]
    NoLocalSecret(String),
    #[error("cannot resolve {0}")]
    Unresolved(String),
}

fn aws<E: std::error::Error + 'static>(e: E) -> ProvisionError {
    ProvisionError::Aws(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())
}

/// What a logical resource became in the emulator.
#[derive(Debug, Clone)]
pub struct Physical {
    /// What `!Ref` yields (table name, queue URL, secret ARN).
    pub reference: String,
    /// What `!GetAtt X.Arn` yields.
    pub arn: String,
}

/// A provisioned local stack.
#[derive(Debug, Clone)]
pub struct Stack {
    pub prefix: String,
    pub resources: HashMap<String, Physical>,
    pub parameters: BTreeMap<String, String>,
    /// Values a local run gives environment variables whose template value only exists in AWS
    /// (the WebSocket API's URLs, see [`local_ws_env`]); each applies to every function whose
    /// template declares the variable, in place of the template's value. A function that does
    /// not declare it does not get it, locally as in AWS.
    pub local_env: BTreeMap<String, String>,
    /// IAM statements a function holds locally on top of its template policy, by logical id
    /// ([`crate::iam`]): for a test that points a function at a resource outside the template,
    /// as a deploy would change the policy together with the variable. Empty in `make dev`.
    pub iam_grants: BTreeMap<String, Vec<serde_json::Value>>,
}

/// Where functions push frames to WebSocket connections: the Management API endpoint
/// (`https://{api}.execute-api.{region}.amazonaws.com/{stage}` in AWS).
pub const WS_CALLBACK_URL_VAR: &str = "PURSE_WS_CALLBACK_URL";
/// Where clients open their WebSocket (`wss://{api}.execute-api.{region}.amazonaws.com/{stage}`
/// in AWS), for answers that tell clients where to connect.
pub const WS_URL_VAR: &str = "PURSE_WS_URL";
/// The local WebSocket endpoint's address unless told otherwise (`make dev`'s default
/// `PURSE_WS_PORT`).
pub const DEFAULT_LOCAL_WS_BASE_URL: &str = "http://127.0.0.1:3001";

/// The local values of [`WS_CALLBACK_URL_VAR`] and [`WS_URL_VAR`] for a WebSocket endpoint at
/// `base_url` (`http://127.0.0.1:3001`): the callback URL is the endpoint's own http URL (it
/// serves `@connections` there), the client URL the same address as `ws://`, with the path `/`
/// so that `?ticket=...` can be appended (in AWS the path is the stage).
pub fn local_ws_env(base_url: &str) -> BTreeMap<String, String> {
    let base = base_url.trim_end_matches('/');
    let ws = match base.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}/"),
        Some((_, rest)) => format!("ws://{rest}/"),
        None => format!("ws://{base}/"),
    };
    BTreeMap::from([(WS_CALLBACK_URL_VAR.to_owned(), base.to_owned()), (WS_URL_VAR.to_owned(), ws)])
}

/// Parameter values for a local stack (the template's defaults, plus local values for the rest).
pub fn local_parameters(template: &Template, api_base_url: &str) -> BTreeMap<String, String> {
    let mut params = template.parameter_defaults();
    params.insert("Stage".into(), "local".into());
    params.insert("JwtIssuer".into(), api_base_url.to_owned());
    // The web app is served by the dev server at `/app/` (tools/devserver/src/webapp.rs): the
    // checkout sends the browser back to `/app/wallet/deposits/<id>?result=...`.
    params.insert("FrontendUrl".into(), format!("{}/app", api_base_url.trim_end_matches('/')));
    if let Ok(revio) = std::env::var("PURSE_REVIO_URL") {
        params.insert("RevioBaseUrl".into(), revio);
    }
    // The Revio sandbox speaks plain http on localhost. Only a local stack may allow that; the
    // template's default (and so every deployed stage) requires https.
    params.insert("RevioAllowInsecureHttp".into(), "true".into());
    if let Ok(kyc) = std::env::var("PURSE_KYC_URL") {
        params.insert("KycBaseUrl".into(), kyc);
    }
    params.insert("KycAllowInsecureHttp".into(), "true".into());
    // The telephony sandbox (tools/sandbox/telephony.py): its API on plain http, its number.
    if let Ok(telephony) = std::env::var("PURSE_TELEPHONY_URL") {
        params.insert("TelephonyBaseUrl".into(), telephony);
    }
    params.insert("TelephonyAllowInsecureHttp".into(), "true".into());
    params.insert(
        "TelephonyTollFreeNumber".into(),
        std::env::var("TELEPHONY_SANDBOX_TOLL_FREE").unwrap_or_else(|_| TELEPHONY_SANDBOX_TOLL_FREE.into()),
    );
    // Locally a missing KYC result is looked for after 2 s, 4 s, 8 s, then handed to a person.
    params.insert("KycFollowUpAfterSeconds".into(), "2".into());
    params.insert("KycMaxPolls".into(), "3".into());
    // Locally a new bank account is usable at once, and a payout Revio could not take is tried
    // again after 1 s, 2 s, 4 s, ...
    params.insert("BankAccountCoolingOffSeconds".into(), "0".into());
    params.insert("PayoutRetryBaseSeconds".into(), "1".into());
    // Calls: `PURSE_BILLING_PERIOD_SECONDS=3 make dev` bills a "minute" every 3 s (a demo).
    if let Ok(period) = std::env::var("PURSE_BILLING_PERIOD_SECONDS") {
        params.insert("BillingPeriodSeconds".into(), period);
    }
    // Function URLs: what `!GetAtt <Fn>Url.FunctionUrl` yields locally.
    for f in template.functions().unwrap_or_default() {
        if let Some(path) = &f.url_path {
            params.insert(
                format!("{}Url.FunctionUrl", f.logical_id),
                format!("{}{path}", api_base_url.trim_end_matches('/')),
            );
        }
    }
    params
}

/// The value a secret holds in a local stack: fresh keys, sandbox credentials.
pub fn local_secret_value(logical_id: &str) -> Option<String> {
    match logical_id {
        "JwtSigningKeysSecret" | "CursorKeysSecret" => {
            Some(purse::auth::tokens::SigningKeys::random("local-1").to_json())
        }
        "RevioApiSecret" => Some(
            serde_json::json!({
                "api_key": std::env::var("REVIO_SANDBOX_API_KEY").unwrap_or_else(|_| "sandbox-revio-key".into()),
                "brand_id": std::env::var("REVIO_SANDBOX_BRAND_ID").unwrap_or_else(|_| "sandbox-brand".into()),
            })
            .to_string(),
        ),
        "KycApiSecret" => Some(
            serde_json::json!({
                "api_key": std::env::var("KYC_SANDBOX_API_KEY").unwrap_or_else(|_| "sandbox-kyc-key".into()),
                "webhook_secrets": [std::env::var("KYC_SANDBOX_WEBHOOK_SECRET").unwrap_or_else(|_| KYC_SANDBOX_WEBHOOK_SECRET.into())],
            })
            .to_string(),
        ),
        "TelephonyApiSecret" => Some(
            serde_json::json!({
                "account_sid": std::env::var("TELEPHONY_SANDBOX_ACCOUNT_SID").unwrap_or_else(|_| TELEPHONY_SANDBOX_ACCOUNT_SID.into()),
                "auth_token": std::env::var("TELEPHONY_SANDBOX_AUTH_TOKEN").unwrap_or_else(|_| TELEPHONY_SANDBOX_AUTH_TOKEN.into()),
            })
            .to_string(),
        ),
        "PiiKeysSecret" => Some(purse::pii::PiiKeys::random_json("local-1")),
        _ => None,
    }
}

/// The telephony sandbox's defaults (`tools/sandbox/telephony.py`): account, auth token (the key
/// of every `X-Twilio-Signature`) and toll-free number.
pub const TELEPHONY_SANDBOX_ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
pub const TELEPHONY_SANDBOX_AUTH_TOKEN: &str = "purse-dev-telephony-token";
pub const TELEPHONY_SANDBOX_TOLL_FREE: &str = "+18005550100";

/// The KYC sandbox's default Standard Webhooks signing secret (`tools/sandbox/kyc.py`).
pub const KYC_SANDBOX_WEBHOOK_SECRET: &str = "whsec_c2FuZGJveC1reWMtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXM=";

fn key_schema(keys: &[crate::template::KeyElement]) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    keys.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(aws)
        })
        .collect()
}

/// Creates every table, queue and secret of `template` with names starting with `prefix`.
/// Resources that already exist are kept.
///
/// # Errors
/// [`ProvisionError`] when the emulator refuses a resource or a secret has no local value.
pub async fn provision(
    template: &Template,
    config: &aws_config::SdkConfig,
    prefix: &str,
    parameters: BTreeMap<String, String>,
) -> Result<Stack, ProvisionError> {
    let mut resources = HashMap::new();
    let region = config.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());

    let ddb = aws_sdk_dynamodb::Client::new(config);
    for t in template.tables() {
        let name = format!("{prefix}{}", t.logical_id);
        let attrs = t
            .attributes
            .iter()
            .map(|(n, ty)| {
                AttributeDefinition::builder()
                    .attribute_name(n)
                    .attribute_type(ScalarAttributeType::from(ty.as_str()))
                    .build()
                    .map_err(aws)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut req = ddb
            .create_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(attrs))
            .set_key_schema(Some(key_schema(&t.keys)?));
        for g in &t.indexes {
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(&g.name)
                    .set_key_schema(Some(key_schema(&g.keys)?))
                    .projection(
                        Projection::builder().projection_type(ProjectionType::from(g.projection.as_str())).build(),
                    )
                    .build()
                    .map_err(aws)?,
            );
        }
        match req.send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(aws(e)),
        }
        if let Some(attr) = &t.ttl_attribute {
            let _ = ddb
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder().attribute_name(attr).enabled(true).build().map_err(aws)?,
                )
                .send()
                .await;
        }
        let arn = format!("arn:aws:dynamodb:{region}:123456789012:table/{name}");
        resources.insert(t.logical_id.clone(), Physical { reference: name, arn });
    }

    let sqs = aws_sdk_sqs::Client::new(config);
    let mut queues = template.queues();
    // Dead-letter queues first, so their ARNs exist when the main queues name them.
    queues.sort_by_key(|q| q.redrive.is_some());
    for q in queues {
        let name = format!("{prefix}{}", q.logical_id);
        let mut req = sqs.create_queue().queue_name(&name);
        if let Some(v) = q.visibility_timeout {
            req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, v.to_string());
        }
        if let Some(v) = q.message_retention {
            req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::MessageRetentionPeriod, v.to_string());
        }
        if let Some((dlq, max)) = &q.redrive {
            let target =
                resources.get(dlq).ok_or_else(|| ProvisionError::Unresolved(format!("{}: DLQ {dlq}", q.logical_id)))?;
            let policy = serde_json::json!({"deadLetterTargetArn": target.arn, "maxReceiveCount": max}).to_string();
            req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy, policy);
        }
        let url = req.send().await.map_err(aws)?.queue_url.unwrap_or_default();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(aws)?
            .attributes
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
            .unwrap_or_default();
        resources.insert(q.logical_id.clone(), Physical { reference: url, arn });
    }

    let sm = aws_sdk_secretsmanager::Client::new(config);
    for id in template.secrets() {
        let name = format!("{prefix}{id}");
        let value = local_secret_value(&id).ok_or_else(|| ProvisionError::NoLocalSecret(id.clone()))?;
        let arn = match sm.create_secret().name(&name).secret_string(value).send().await {
            Ok(out) => out.arn.unwrap_or_default(),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_exists_exception()) => {
                sm.describe_secret().secret_id(&name).send().await.map_err(aws)?.arn.unwrap_or_default()
            }
            Err(e) => return Err(aws(e)),
        };
        resources.insert(id, Physical { reference: arn.clone(), arn });
    }

    Ok(Stack {
        prefix: prefix.to_owned(),
        resources,
        parameters,
        local_env: local_ws_env(DEFAULT_LOCAL_WS_BASE_URL),
        iam_grants: BTreeMap::new(),
    })
}

impl Stack {
    /// Resolves a template value (`!Ref`, `!GetAtt`, plain scalars) against this stack.
    ///
    /// # Errors
    /// [`ProvisionError::Unresolved`] for unknown references or unsupported intrinsics.
    pub fn resolve(&self, value: &Value) -> Result<String, ProvisionError> {
        if let Some((id, attr)) = reference_target(value) {
            if attr.is_none() {
                if let Some(p) = self.parameters.get(&id) {
                    return Ok(p.clone());
                }
            }
            if let Some(attr) = &attr {
                if let Some(p) = self.parameters.get(&format!("{id}.{attr}")) {
                    return Ok(p.clone());
                }
            }
            let res = self.resources.get(&id).ok_or_else(|| ProvisionError::Unresolved(id.clone()))?;
            return Ok(match attr.as_deref() {
                None => res.reference.clone(),
                Some("Arn") => res.arn.clone(),
                Some(other) => return Err(ProvisionError::Unresolved(format!("{id}.{other}"))),
            });
        }
        if let Value::Tagged(t) = value {
            if t.tag == "!Sub" {
                let text = t.value.as_str().ok_or_else(|| ProvisionError::Unresolved("!Sub with a list".into()))?;
                return self.substitute(text);
            }
        }
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(ProvisionError::Unresolved(format!("{other:?}"))),
        }
    }

    /// Expands `${Name}` and `${Name.Attr}` in a `!Sub` string.
    fn substitute(&self, text: &str) -> Result<String, ProvisionError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').ok_or_else(|| ProvisionError::Unresolved(text.to_owned()))? + start;
            let name = &rest[start + 2..end];
            let tag = match name.split_once('.') {
                Some(_) => "!GetAtt",
                None => "!Ref",
            };
            let reference = Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
                tag: serde_yaml::value::Tag::new(tag),
                value: Value::String(name.to_owned()),
            }));
            out.push_str(&self.resolve(&reference)?);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The environment a function gets in this stack, exactly as the template sets it (with
    /// [`Stack::local_env`]'s values for the variables the template declares).
    ///
    /// # Errors
    /// See [`Stack::resolve`].
    pub fn function_env(&self, function: &FunctionSpec) -> Result<Env, ProvisionError> {
        let mut vars = HashMap::new();
        for (k, v) in &function.environment {
            let value = match self.local_env.get(k) {
                Some(local) => local.clone(),
                None => self.resolve(v)?,
            };
            vars.insert(k.clone(), value);
        }
        Ok(Env::from_map(vars))
    }

    /// Points the functions at a local WebSocket endpoint served at `base_url`
    /// (`http://127.0.0.1:3001`); see [`local_ws_env`].
    pub fn serve_ws_at(&mut self, base_url: &str) {
        self.local_env.extend(local_ws_env(base_url));
    }

    /// The physical resource behind a logical id.
    pub fn get(&self, logical_id: &str) -> Option<&Physical> {
        self.resources.get(logical_id)
    }
}

/// Compares the emulator's tables and queues with the template; returns every difference.
///
/// # Errors
/// [`ProvisionError::Aws`] when a resource cannot be described.
pub async fn differences(
    template: &Template,
    config: &aws_config::SdkConfig,
    stack: &Stack,
) -> Result<Vec<String>, ProvisionError> {
    let mut diffs = Vec::new();
    let ddb = aws_sdk_dynamodb::Client::new(config);
    for t in template.tables() {
        let Some(p) = stack.get(&t.logical_id) else {
            diffs.push(format!("table {} was not provisioned", t.logical_id));
            continue;
        };
        let desc = ddb.describe_table().table_name(&p.reference).send().await.map_err(aws)?;
        let table = desc.table.unwrap_or_else(|| aws_sdk_dynamodb::types::TableDescription::builder().build());
        let live_keys: Vec<_> = table
            .key_schema()
            .iter()
            .map(|k| crate::template::KeyElement {
                attribute: k.attribute_name().to_owned(),
                key_type: k.key_type().as_str().to_owned(),
            })
            .collect();
        if live_keys != t.keys {
            diffs.push(format!(
                "table {}: keys {:?} in the emulator, {:?} in the template",
                t.logical_id, live_keys, t.keys
            ));
        }
        let mut live_indexes: BTreeMap<String, Vec<crate::template::KeyElement>> = BTreeMap::new();
        for g in table.global_secondary_indexes() {
            live_indexes.insert(
                g.index_name().unwrap_or_default().to_owned(),
                g.key_schema()
                    .iter()
                    .map(|k| crate::template::KeyElement {
                        attribute: k.attribute_name().to_owned(),
                        key_type: k.key_type().as_str().to_owned(),
                    })
                    .collect(),
            );
        }
        let declared: BTreeMap<_, _> = t.indexes.iter().map(|g| (g.name.clone(), g.keys.clone())).collect();
        if live_indexes != declared {
            diffs.push(format!(
                "table {}: indexes {:?} in the emulator, {:?} in the template",
                t.logical_id, live_indexes, declared
            ));
        }
    }
    let sqs = aws_sdk_sqs::Client::new(config);
    for q in template.queues() {
        let Some(p) = stack.get(&q.logical_id) else {
            diffs.push(format!("queue {} was not provisioned", q.logical_id));
            continue;
        };
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&p.reference)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .map_err(aws)?
            .attributes
            .unwrap_or_default();
        let live = attrs.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy).and_then(|r| {
            let v: serde_json::Value = serde_json::from_str(r).ok()?;
            let arn = v["deadLetterTargetArn"].as_str()?.to_owned();
            let max = v["maxReceiveCount"].as_u64().or_else(|| v["maxReceiveCount"].as_str()?.parse().ok())?;
            Some((arn, max as u32))
        });
        let declared =
            q.redrive.as_ref().map(|(dlq, max)| (stack.get(dlq).map(|d| d.arn.clone()).unwrap_or_default(), *max));
        if live != declared {
            diffs.push(format!(
                "queue {}: redrive {:?} in the emulator, {:?} in the template",
                q.logical_id, live, declared
            ));
        }
    }
    Ok(diffs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Stack {
        Stack {
            prefix: "p-".into(),
            resources: HashMap::from([(
                "Queue".to_owned(),
                Physical { reference: "http://q/p-Queue".into(), arn: "arn:q".into() },
            )]),
            parameters: BTreeMap::from([("Stage".to_owned(), "local".to_owned())]),
            local_env: local_ws_env(DEFAULT_LOCAL_WS_BASE_URL),
            iam_grants: BTreeMap::new(),
        }
    }

    fn function(env: &str) -> FunctionSpec {
        let template = Template::parse(&format!(
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Metadata: {{BuildProperties: {{Binary: f}}}}\n    Properties:\n      Environment:\n        Variables:\n{env}"
        ))
        .unwrap();
        template.functions().unwrap().remove(0)
    }

    #[test]
    fn the_local_ws_urls_are_the_endpoints_http_and_ws_addresses() {
        let env = local_ws_env("http://127.0.0.1:3001/");
        assert_eq!(env[WS_CALLBACK_URL_VAR], "http://127.0.0.1:3001");
        assert_eq!(env[WS_URL_VAR], "ws://127.0.0.1:3001/");
        assert_eq!(local_ws_env("https://h")[WS_URL_VAR], "wss://h/");
    }

    #[test]
    fn a_declared_ws_variable_takes_the_local_value_instead_of_the_aws_only_one() {
        let f = function(concat!(
            "          PURSE_WS_CALLBACK_URL: !Sub https://${WebSocketApi}.execute-api.${AWS::Region}.amazonaws.com/${Stage}\n",
            "          Q: !Ref Queue\n",
        ));
        let mut s = stack();
        let env = s.function_env(&f).unwrap();
        assert_eq!(env.require("PURSE_WS_CALLBACK_URL").unwrap(), "http://127.0.0.1:3001");
        assert_eq!(env.require("Q").unwrap(), "http://q/p-Queue");
        assert!(env.require("PURSE_WS_URL").is_err(), "not declared, not given");
        s.serve_ws_at("http://127.0.0.1:4001");
        assert_eq!(s.function_env(&f).unwrap().require("PURSE_WS_CALLBACK_URL").unwrap(), "http://127.0.0.1:4001");
    }
}
