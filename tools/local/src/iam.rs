//! Each function's IAM identity and policy, enforced by the local emulator.
//!
//! In AWS every function runs as its own execution role, and DynamoDB, SQS and Secrets Manager
//! refuse what the role's policy does not allow. Locally the same holds:
//!
//! - **Identity.** Every function gets its own credentials ([`function_config`]): the access
//!   key id is [`principal`] (`fn-<stack prefix><LogicalId>`), the secret the usual dummy. The
//!   emulator reads the access key id from each request's SigV4 `Authorization` header. The
//!   tests' and the dev server's own clients keep the shared `testing` key and are not governed.
//! - **Policy.** [`function_statements`] turns a function's `Policies` into IAM statements with
//!   this stack's local ARNs: inline `Statement` documents with `!Ref`, `!GetAtt`, `!Sub`
//!   (`${X.Arn}`, `${AWS::Region}`, `${AWS::AccountId}`, `${AWS::Partition}`, `${Stage}`, ...)
//!   and `!Join` resolved; the SAM policy templates Purse uses expanded exactly as SAM's
//!   `policy_templates.json` defines them; plus what SAM attaches by itself (the basic execution
//!   role, X-Ray with `Tracing: Active`, `AWSLambdaSQSQueueExecutionRole` for an `SQS` event).
//!   Anything else (an unknown policy template or managed policy, `Role:`, `!If`) is an error, so
//!   no function silently runs with more than its template grants.
//! - **Registration.** [`register`] sends every function's statements to the emulator
//!   (`POST /_emulator/iam`) before any function starts; [`crate::router::Router::start_with`]
//!   calls it. Against real AWS (no `AWS_ENDPOINT_URL`) nothing is registered and the functions
//!   keep the shared configuration.
//!
//! The emulator side (evaluation, AccessDeniedException, the usage record, `PURSE_IAM` modes)
//! is described in `tools/stack/iam_policy.py`.

use crate::provision::Stack;
use crate::template::{FunctionSpec, Template};
use serde_json::{json, Map, Value as Json};
use serde_yaml::Value;
use std::collections::BTreeMap;

/// The account moto answers for, and so the account in every local ARN.
pub const LOCAL_ACCOUNT_ID: &str = "123456789012";

/// Why a function's policy could not be made or registered.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error("function {function}: {reason}")]
    Policy { function: String, reason: String },
    #[error("registering the functions' IAM policies with the emulator at {endpoint}: {reason}")]
    Register { endpoint: String, reason: String },
}

/// The access key id a function signs with in the stack with this name prefix.
pub fn principal(prefix: &str, logical_id: &str) -> String {
    format!("fn-{prefix}{logical_id}")
}

/// `aws` with the function's own credentials (see [`principal`]).
pub fn function_config(aws: &aws_config::SdkConfig, prefix: &str, logical_id: &str) -> aws_config::SdkConfig {
    let credentials = aws_sdk_dynamodb::config::Credentials::new(
        principal(prefix, logical_id),
        "purse-local-function-secret",
        None,
        None,
        "purse-local-function",
    );
    aws.to_builder().credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(credentials)).build()
}

/// Whether `aws` points at the local emulator (an explicit endpoint), where policies are
/// registered and enforced.
pub fn is_local(aws: &aws_config::SdkConfig) -> bool {
    aws.endpoint_url().is_some()
}

struct Resolver<'a> {
    template: &'a Template,
    stack: &'a Stack,
    region: String,
}

fn fail(reason: impl Into<String>) -> String {
    reason.into()
}

impl Resolver<'_> {
    fn pseudo(&self, name: &str) -> Option<String> {
        Some(match name {
            "AWS::Region" => self.region.clone(),
            "AWS::AccountId" => LOCAL_ACCOUNT_ID.to_owned(),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            "AWS::StackName" => self.stack.prefix.trim_end_matches('-').to_owned(),
            _ => return None,
        })
    }

    /// What `!Ref name` yields locally.
    fn reference(&self, name: &str) -> Result<String, String> {
        if let Some(v) = self.pseudo(name) {
            return Ok(v);
        }
        if let Some(v) = self.stack.parameters.get(name) {
            return Ok(v.clone());
        }
        if let Some(p) = self.stack.get(name) {
            return Ok(p.reference.clone());
        }
        if self.template.resource_type(name).is_some() {
            // Declared but not emulated (the WebSocket API, a KMS key, ...): a stand-in name,
            // only ever compared with requests the emulator does not serve.
            return Ok(format!("{}{name}", self.stack.prefix));
        }
        Err(fail(format!("!Ref {name}: no such parameter or resource")))
    }

    /// What `!GetAtt id.attr` yields locally.
    fn attribute(&self, id: &str, attr: &str) -> Result<String, String> {
        if let Some(v) = self.stack.parameters.get(&format!("{id}.{attr}")) {
            return Ok(v.clone());
        }
        let kind =
            self.template.resource_type(id).ok_or_else(|| fail(format!("!GetAtt {id}.{attr}: no resource {id}")))?;
        let name = format!("{}{id}", self.stack.prefix);
        if let Some(p) = self.stack.get(id) {
            return match (kind.as_str(), attr) {
                (_, "Arn") => Ok(p.arn.clone()),
                ("AWS::SQS::Queue", "QueueName") => Ok(name),
                ("AWS::SQS::Queue", "QueueUrl") => Ok(p.reference.clone()),
                ("AWS::DynamoDB::Table", "StreamArn") => Ok(format!("{}/stream/*", p.arn)),
                _ => Err(fail(format!("!GetAtt {id}.{attr}: attribute not known locally"))),
            };
        }
        let service = kind.split("::").nth(1).unwrap_or("unknown").to_ascii_lowercase();
        Ok(match attr {
            "Arn" => format!("arn:aws:{service}:{}:{LOCAL_ACCOUNT_ID}:{name}", self.region),
            _ => format!("{name}.{attr}"),
        })
    }

    fn sub(&self, text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').ok_or_else(|| fail(format!("!Sub {text:?}: unclosed ${{")))? + start;
            let name = &rest[start + 2..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(v);
            } else if self.pseudo(name).is_some() || !name.contains('.') {
                out.push_str(&self.reference(name)?);
            } else {
                let (id, attr) = name.split_once('.').unwrap_or((name, ""));
                out.push_str(&self.attribute(id, attr)?);
            }
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A template value with every intrinsic resolved, as JSON.
    fn resolve(&self, value: &Value) -> Result<Json, String> {
        match value {
            Value::Null => Ok(Json::Null),
            Value::Bool(b) => Ok(Json::Bool(*b)),
            Value::Number(n) => Ok(Json::String(n.to_string())),
            Value::String(s) => Ok(Json::String(s.clone())),
            Value::Sequence(items) => Ok(Json::Array(items.iter().map(|v| self.resolve(v)).collect::<Result<_, _>>()?)),
            Value::Tagged(t) => self.intrinsic(&t.tag.to_string(), &t.value),
            Value::Mapping(m) => {
                if m.len() == 1 {
                    if let Some((Value::String(k), v)) = m.iter().next() {
                        if k == "Ref" || k.starts_with("Fn::") {
                            let tag = if k == "Ref" { "!Ref".to_owned() } else { format!("!{}", &k[4..]) };
                            return self.intrinsic(&tag, v);
                        }
                    }
                }
                let mut out = Map::new();
                for (k, v) in m {
                    let k = k.as_str().ok_or_else(|| fail(format!("non-string key {k:?}")))?;
                    out.insert(k.to_owned(), self.resolve(v)?);
                }
                Ok(Json::Object(out))
            }
        }
    }

    fn string(&self, value: &Value) -> Result<String, String> {
        match self.resolve(value)? {
            Json::String(s) => Ok(s),
            other => Err(fail(format!("expected a string, got {other}"))),
        }
    }

    fn intrinsic(&self, tag: &str, arg: &Value) -> Result<Json, String> {
        let tag = tag.trim_start_matches('!');
        match tag {
            "Ref" => Ok(Json::String(self.reference(arg.as_str().ok_or_else(|| fail("!Ref needs a name"))?)?)),
            "GetAtt" => {
                let (id, attr) = match arg {
                    Value::String(s) => s.split_once('.').map(|(a, b)| (a.to_owned(), b.to_owned())),
                    Value::Sequence(v) if v.len() == 2 => Some((
                        v[0].as_str().unwrap_or_default().to_owned(),
                        v[1].as_str().unwrap_or_default().to_owned(),
                    )),
                    _ => None,
                }
                .ok_or_else(|| fail(format!("!GetAtt {arg:?}: expected Resource.Attribute")))?;
                Ok(Json::String(self.attribute(&id, &attr)?))
            }
            "Sub" => match arg {
                Value::String(text) => Ok(Json::String(self.sub(text, &BTreeMap::new())?)),
                Value::Sequence(v) if v.len() == 2 => {
                    let text = v[0].as_str().ok_or_else(|| fail("!Sub: the first item must be a string"))?;
                    let mut vars = BTreeMap::new();
                    for (k, val) in v[1].as_mapping().ok_or_else(|| fail("!Sub: the second item must map names"))? {
                        let k = k.as_str().ok_or_else(|| fail("!Sub: variable names are strings"))?;
                        vars.insert(k.to_owned(), self.string(val)?);
                    }
                    Ok(Json::String(self.sub(text, &vars)?))
                }
                _ => Err(fail("!Sub: expected a string or [string, {variables}]")),
            },
            "Join" => {
                let v =
                    arg.as_sequence().filter(|v| v.len() == 2).ok_or_else(|| fail("!Join: expected [sep, [items]]"))?;
                let sep = v[0].as_str().ok_or_else(|| fail("!Join: the separator must be a string"))?;
                let items = match self.resolve(&v[1])? {
                    Json::Array(items) => items,
                    _ => return Err(fail("!Join: expected a list")),
                };
                let parts: Vec<String> = items
                    .into_iter()
                    .map(|i| i.as_str().map(str::to_owned).ok_or_else(|| fail("!Join: items must be strings")))
                    .collect::<Result<_, _>>()?;
                Ok(Json::String(parts.join(sep)))
            }
            other => Err(fail(format!("the intrinsic !{other} is not supported in a local policy"))),
        }
    }
}

fn statement(actions: &[&str], resources: Vec<String>) -> Json {
    json!({"Effect": "Allow", "Action": actions, "Resource": resources})
}

/// The statements of one SAM policy template, as `policy_templates.json` in
/// aws/serverless-application-model defines them; `None` for a template not known here.
fn sam_template(name: &str, params: &BTreeMap<String, String>, r: &Resolver) -> Result<Option<Vec<Json>>, String> {
    let region = &r.region;
    let param = |key: &str| -> Result<String, String> {
        params.get(key).cloned().ok_or_else(|| fail(format!("{name} needs the parameter {key}")))
    };
    let table = |t: &str| {
        vec![
            format!("arn:aws:dynamodb:{region}:{LOCAL_ACCOUNT_ID}:table/{t}"),
            format!("arn:aws:dynamodb:{region}:{LOCAL_ACCOUNT_ID}:table/{t}/index/*"),
        ]
    };
    let queue = |q: &str| vec![format!("arn:aws:sqs:{region}:{LOCAL_ACCOUNT_ID}:{q}")];
    let key = |k: &str| vec![format!("arn:aws:kms:{region}:{LOCAL_ACCOUNT_ID}:key/{k}")];
    Ok(Some(match name {
        "DynamoDBCrudPolicy" => vec![statement(
            &[
                "dynamodb:GetItem",
                "dynamodb:DeleteItem",
                "dynamodb:PutItem",
                "dynamodb:Scan",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:BatchGetItem",
                "dynamodb:DescribeTable",
                "dynamodb:ConditionCheckItem",
            ],
            table(&param("TableName")?),
        )],
        "DynamoDBReadPolicy" => vec![statement(
            &["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:DescribeTable"],
            table(&param("TableName")?),
        )],
        "DynamoDBWritePolicy" => vec![statement(
            &["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"],
            table(&param("TableName")?),
        )],
        "DynamoDBReconfigurePolicy" => vec![statement(
            &["dynamodb:UpdateTable"],
            vec![format!("arn:aws:dynamodb:{region}:{LOCAL_ACCOUNT_ID}:table/{}", param("TableName")?)],
        )],
        "SQSSendMessagePolicy" => vec![statement(&["sqs:SendMessage*"], queue(&param("QueueName")?))],
        "SQSPollerPolicy" => vec![statement(
            &[
                "sqs:ChangeMessageVisibility",
                "sqs:ChangeMessageVisibilityBatch",
                "sqs:DeleteMessage",
                "sqs:DeleteMessageBatch",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
            ],
            queue(&param("QueueName")?),
        )],
        "AWSSecretsManagerGetSecretValuePolicy" => {
            vec![statement(&["secretsmanager:GetSecretValue"], vec![param("SecretArn")?])]
        }
        "KMSDecryptPolicy" => vec![statement(&["kms:Decrypt"], key(&param("KeyId")?))],
        "KMSEncryptPolicy" => vec![statement(&["kms:Encrypt"], key(&param("KeyId")?))],
        "CloudWatchPutMetricPolicy" => vec![statement(&["cloudwatch:PutMetricData"], vec!["*".into()])],
        "SNSPublishMessagePolicy" => vec![statement(
            &["sns:Publish"],
            vec![format!("arn:aws:sns:{region}:{LOCAL_ACCOUNT_ID}:{}", param("TopicName")?)],
        )],
        _ => return Ok(None),
    }))
}

/// AWS managed policies a function may name, by what they allow of the emulated services
/// (their logs / X-Ray / CloudWatch parts kept for completeness).
fn managed_policy(name: &str) -> Option<Vec<Json>> {
    let name = name.rsplit('/').next().unwrap_or(name);
    Some(match name {
        "AWSLambdaBasicExecutionRole" => basic_execution(),
        "AWSXRayDaemonWriteAccess" | "AWSXrayWriteOnlyAccess" => xray(),
        "AWSLambdaSQSQueueExecutionRole" => sqs_queue_execution(),
        "CloudWatchLambdaInsightsExecutionRolePolicy" => {
            vec![statement(&["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"], vec!["*".into()])]
        }
        _ => return None,
    })
}

fn basic_execution() -> Vec<Json> {
    vec![statement(&["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"], vec!["*".into()])]
}

fn xray() -> Vec<Json> {
    vec![statement(
        &["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"],
        vec!["*".into()],
    )]
}

fn sqs_queue_execution() -> Vec<Json> {
    let mut out =
        vec![statement(&["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"], vec!["*".into()])];
    out.extend(basic_execution());
    out
}

/// Every IAM statement the function's execution role holds in this stack, with local ARNs.
///
/// # Errors
/// [`IamError::Policy`] for a policy entry that cannot be turned into statements faithfully: an
/// unknown SAM policy template or managed policy, an unresolvable reference, an unsupported
/// intrinsic, a function with its own `Role`.
pub fn function_statements(
    template: &Template,
    stack: &Stack,
    function: &FunctionSpec,
    region: &str,
) -> Result<Vec<Json>, IamError> {
    let err = |reason: String| IamError::Policy { function: function.logical_id.clone(), reason };
    if function.has_role {
        return Err(err("declares its own Role; only Policies are supported locally".into()));
    }
    let r = Resolver { template, stack, region: region.to_owned() };
    // What SAM attaches to every function's role by itself.
    let mut out = basic_execution();
    if function.tracing_active {
        out.extend(xray());
    }
    if !function.sqs_sources.is_empty() {
        out.extend(sqs_queue_execution());
    }
    for (i, entry) in function.policies.iter().enumerate() {
        let at = |reason: String| err(format!("Policies[{i}]: {reason}"));
        match entry {
            Value::String(name) => {
                out.extend(managed_policy(name).ok_or_else(|| at(format!("unknown managed policy {name}")))?);
            }
            Value::Mapping(m) if m.len() == 1 || get_key(m, "Statement").is_some() => {
                if let Some(statements) = get_key(m, "Statement") {
                    let unknown: Vec<_> =
                        m.keys().filter_map(Value::as_str).filter(|k| !["Statement", "Version"].contains(k)).collect();
                    if !unknown.is_empty() {
                        return Err(at(format!("unknown keys {unknown:?} next to Statement")));
                    }
                    match r.resolve(statements).map_err(at)? {
                        Json::Array(items) => out.extend(items),
                        single @ Json::Object(_) => out.push(single),
                        other => return Err(at(format!("Statement must be a list, got {other}"))),
                    }
                    continue;
                }
                let (name, params) = m.iter().next().ok_or_else(|| at("empty entry".into()))?;
                let name = name.as_str().ok_or_else(|| at("policy template name must be a string".into()))?;
                let mut resolved = BTreeMap::new();
                if let Some(pm) = params.as_mapping() {
                    for (k, v) in pm {
                        let k = k.as_str().ok_or_else(|| at(format!("{name}: parameter names are strings")))?;
                        resolved.insert(k.to_owned(), r.string(v).map_err(|e| at(format!("{name}.{k}: {e}")))?);
                    }
                }
                let statements = sam_template(name, &resolved, &r)
                    .map_err(at)?
                    .ok_or_else(|| at(format!("unknown SAM policy template {name}")))?;
                out.extend(statements);
            }
            other => return Err(at(format!("unsupported policy entry {other:?}"))),
        }
    }
    Ok(out)
}

fn get_key<'a>(m: &'a serde_yaml::Mapping, key: &str) -> Option<&'a Value> {
    m.get(Value::String(key.to_owned()))
}

/// Every function's principal and statements in this stack (its template policy and its
/// [`Stack::iam_grants`]).
///
/// # Errors
/// See [`function_statements`].
pub fn stack_policies(
    template: &Template,
    stack: &Stack,
    region: &str,
) -> Result<BTreeMap<String, (String, Vec<Json>)>, IamError> {
    let mut out = BTreeMap::new();
    let functions =
        template.functions().map_err(|e| IamError::Policy { function: "*".into(), reason: e.to_string() })?;
    for f in &functions {
        let mut statements = function_statements(template, stack, f, region)?;
        statements.extend(stack.iam_grants.get(&f.logical_id).into_iter().flatten().cloned());
        out.insert(principal(&stack.prefix, &f.logical_id), (f.logical_id.clone(), statements));
    }
    Ok(out)
}

/// Registers every function's policy with the emulator `aws` points at; does nothing against
/// real AWS. Returns how many principals were registered.
///
/// # Errors
/// [`IamError::Policy`] (see [`function_statements`]), [`IamError::Register`] when the emulator
/// cannot be reached or refuses a policy (its answer says which and why).
pub async fn register(aws: &aws_config::SdkConfig, template: &Template, stack: &Stack) -> Result<usize, IamError> {
    let Some(endpoint) = aws.endpoint_url() else { return Ok(0) };
    let region = aws.region().map(ToString::to_string).unwrap_or_else(|| "us-east-1".into());
    let policies = stack_policies(template, stack, &region)?;
    let principals: Map<String, Json> = policies
        .iter()
        .map(|(akid, (function, statements))| {
            (akid.clone(), json!({"function": function, "prefix": stack.prefix, "statements": statements}))
        })
        .collect();
    let fail = |reason: String| IamError::Register { endpoint: endpoint.to_owned(), reason };
    let url = format!("{}/_emulator/iam", endpoint.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .json(&json!({"principals": principals}))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(fail(format!("{status}: {body}")));
    }
    Ok(principals.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::{local_ws_env, Physical, DEFAULT_LOCAL_WS_BASE_URL};
    use std::collections::HashMap;

    const TEMPLATE: &str = r#"
Parameters:
  Stage: {Type: String, Default: prod}
Resources:
  PurseTable: {Type: AWS::DynamoDB::Table}
  PayoutsQueue: {Type: AWS::SQS::Queue}
  JwtSecret: {Type: AWS::SecretsManager::Secret}
  WebSocketApi: {Type: AWS::ApiGatewayV2::Api}
  F:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: f}}
    Properties:
      Policies:
        - DynamoDBCrudPolicy: {TableName: !Ref PurseTable}
        - SQSSendMessagePolicy: {QueueName: !GetAtt PayoutsQueue.QueueName}
        - AWSSecretsManagerGetSecretValuePolicy: {SecretArn: !Ref JwtSecret}
        - Statement:
            - Effect: Allow
              Action: [dynamodb:GetItem]
              Resource: !Sub "${PurseTable.Arn}/index/gsi1"
              Condition:
                ForAllValues:StringLike:
                  dynamodb:LeadingKeys: ["USER#*"]
            - Effect: Allow
              Action: execute-api:ManageConnections
              Resource: !Sub arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/${Stage}/*
  G:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: g}}
    Properties:
      Policies:
        - DynamoDBEverythingPolicy: {TableName: !Ref PurseTable}
"#;

    fn stack() -> Stack {
        Stack {
            prefix: "p-".into(),
            resources: HashMap::from([
                (
                    "PurseTable".to_owned(),
                    Physical {
                        reference: "p-PurseTable".into(),
                        arn: "arn:aws:dynamodb:us-east-1:123456789012:table/p-PurseTable".into(),
                    },
                ),
                (
                    "PayoutsQueue".to_owned(),
                    Physical {
                        reference: "http://127.0.0.1:1/123456789012/p-PayoutsQueue".into(),
                        arn: "arn:aws:sqs:us-east-1:123456789012:p-PayoutsQueue".into(),
                    },
                ),
                (
                    "JwtSecret".to_owned(),
                    Physical {
                        reference: "arn:aws:secretsmanager:us-east-1:123456789012:secret:p-JwtSecret-AbCdEf".into(),
                        arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:p-JwtSecret-AbCdEf".into(),
                    },
                ),
            ]),
            parameters: BTreeMap::from([("Stage".to_owned(), "local".to_owned())]),
            local_env: local_ws_env(DEFAULT_LOCAL_WS_BASE_URL),
            iam_grants: BTreeMap::new(),
        }
    }

    fn function(template: &Template, id: &str) -> FunctionSpec {
        template.functions().unwrap().into_iter().find(|f| f.logical_id == id).unwrap()
    }

    #[test]
    fn sam_templates_and_inline_statements_resolve_to_the_stacks_local_arns() {
        let template = Template::parse(TEMPLATE).unwrap();
        let statements = function_statements(&template, &stack(), &function(&template, "F"), "us-east-1").unwrap();
        let find = |action: &str| {
            statements
                .iter()
                .find(|s| s["Action"].as_array().map_or(s["Action"] == action, |a| a.iter().any(|x| x == action)))
                .unwrap_or_else(|| panic!("no statement for {action}: {statements:#?}"))
                .clone()
        };
        assert_eq!(
            find("dynamodb:PutItem")["Resource"],
            json!([
                "arn:aws:dynamodb:us-east-1:123456789012:table/p-PurseTable",
                "arn:aws:dynamodb:us-east-1:123456789012:table/p-PurseTable/index/*"
            ])
        );
        assert_eq!(find("sqs:SendMessage*")["Resource"], json!(["arn:aws:sqs:us-east-1:123456789012:p-PayoutsQueue"]));
        assert_eq!(
            find("secretsmanager:GetSecretValue")["Resource"],
            json!(["arn:aws:secretsmanager:us-east-1:123456789012:secret:p-JwtSecret-AbCdEf"])
        );
        let get = statements.iter().find(|s| s.get("Condition").is_some()).expect("the inline statement");
        assert_eq!(get["Resource"], "arn:aws:dynamodb:us-east-1:123456789012:table/p-PurseTable/index/gsi1");
        assert_eq!(get["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"], json!(["USER#*"]));
        assert_eq!(
            find("execute-api:ManageConnections")["Resource"],
            "arn:aws:execute-api:us-east-1:123456789012:p-WebSocketApi/local/*"
        );
    }

    #[test]
    fn an_unknown_policy_template_is_an_error_not_an_allow_all() {
        let template = Template::parse(TEMPLATE).unwrap();
        let e = function_statements(&template, &stack(), &function(&template, "G"), "us-east-1").unwrap_err();
        assert!(e.to_string().contains("unknown SAM policy template DynamoDBEverythingPolicy"), "{e}");
    }

    #[test]
    fn every_function_of_the_project_template_has_a_policy_that_resolves() {
        let template = Template::project().unwrap();
        let mut s = stack();
        for id in template
            .tables()
            .iter()
            .map(|t| t.logical_id.clone())
            .chain(template.queues().iter().map(|q| q.logical_id.clone()))
            .chain(template.secrets())
        {
            s.resources
                .entry(id.clone())
                .or_insert(Physical { reference: format!("p-{id}"), arn: format!("arn:local:p-{id}") });
        }
        for f in template.functions().unwrap() {
            let statements = function_statements(&template, &s, &f, "us-east-1").unwrap_or_else(|e| panic!("{e}"));
            assert!(statements.len() > basic_execution().len(), "{} grants nothing of its own", f.logical_id);
        }
    }

    #[test]
    fn each_function_signs_with_its_own_access_key() {
        assert_eq!(principal("t01-", "AuthLoginFunction"), "fn-t01-AuthLoginFunction");
    }
}
