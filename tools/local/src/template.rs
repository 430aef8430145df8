//! A model of `template.yaml`: the one source of truth for tables, queues, secrets, functions
//! and their routes, read by the local stack, the dev server and the tests.

use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Why the template could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template: {0}")]
    Io(#[from] std::io::Error),
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template: {0}")]
    Shape(String),
}

fn shape(msg: impl Into<String>) -> TemplateError {
    TemplateError::Shape(msg.into())
}

/// One key attribute: name and `HASH`/`RANGE`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyElement {
    pub attribute: String,
    pub key_type: String,
}

/// A global secondary index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: String,
    pub keys: Vec<KeyElement>,
    pub projection: String,
}

/// A DynamoDB table as declared.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub logical_id: String,
    pub attributes: Vec<(String, String)>,
    pub keys: Vec<KeyElement>,
    pub indexes: Vec<IndexSpec>,
    pub ttl_attribute: Option<String>,
}

/// An SQS queue as declared.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub logical_id: String,
    pub visibility_timeout: Option<u32>,
    pub message_retention: Option<u32>,
    /// Logical id of the dead-letter queue and maxReceiveCount.
    pub redrive: Option<(String, u32)>,
}

/// An SQS event source of a function.
#[derive(Debug, Clone)]
pub struct SqsSource {
    pub queue_logical_id: String,
    pub batch_size: u32,
}

/// A Lambda function as declared.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// The cargo binary (crate) the function runs.
    pub binary: String,
    /// Unresolved environment: globals merged with the function's own.
    pub environment: BTreeMap<String, Value>,
    /// API Gateway HTTP API routes: (method, path).
    pub http_routes: Vec<(String, String)>,
    /// For a function behind a Function URL: the path `make dev` mounts it at.
    pub url_path: Option<String>,
    pub sqs_sources: Vec<SqsSource>,
    /// EventBridge schedule expressions (`rate(5 minutes)`).
    pub schedules: Vec<String>,
    /// API Gateway WebSocket API route keys (`$connect`, `call.invite`, ...) whose integration
    /// invokes this function: read from each `AWS::ApiGatewayV2::Route`'s `RouteKey` and its
    /// `Target` integration's `IntegrationUri`.
    pub ws_routes: Vec<String>,
    /// The function's `Policies`, unresolved (a SAM policy template, a managed policy name or
    /// an inline document per entry); see [`crate::iam`].
    pub policies: Vec<Value>,
    /// Whether the function declares a `Role` of its own instead of `Policies`.
    pub has_role: bool,
    /// `Tracing: Active` (the function's own, else the globals').
    pub tracing_active: bool,
}

/// An API Gateway WebSocket API (`AWS::ApiGatewayV2::Api` with `ProtocolType: WEBSOCKET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketApiSpec {
    pub logical_id: String,
    /// How a message chooses its route, e.g. `$request.body.action`.
    pub route_selection_expression: String,
    /// (route key, logical id of the function its integration invokes), sorted by route key.
    pub routes: Vec<(String, String)>,
}

/// The parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    root: Value,
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(Value::String(key.to_owned())))
}

fn get_str(v: &Value, key: &str) -> Option<String> {
    get(v, key).and_then(Value::as_str).map(str::to_owned)
}

fn get_u32(v: &Value, key: &str) -> Option<u32> {
    get(v, key).and_then(|x| x.as_u64().or_else(|| x.as_str().and_then(|s| s.parse().ok()))).map(|n| n as u32)
}

fn key_elements(v: Option<&Value>) -> Vec<KeyElement> {
    v.and_then(Value::as_sequence)
        .map(|seq| {
            seq.iter()
                .filter_map(|k| {
                    Some(KeyElement { attribute: get_str(k, "AttributeName")?, key_type: get_str(k, "KeyType")? })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The logical id a `!Ref X` or `!GetAtt X.Arn` points at.
pub fn reference_target(v: &Value) -> Option<(String, Option<String>)> {
    match v {
        Value::Tagged(t) if t.tag == "!Ref" => t.value.as_str().map(|s| (s.to_owned(), None)),
        Value::Tagged(t) if t.tag == "!GetAtt" => {
            let text = t.value.as_str()?;
            let (id, attr) = text.split_once('.')?;
            Some((id.to_owned(), Some(attr.to_owned())))
        }
        _ => None,
    }
}

/// The text of a `!Sub` and the names it references (`${Name}` and `${Name.Attr}` give `Name`).
fn sub_references(v: &Value) -> Option<(String, Vec<String>)> {
    let Value::Tagged(t) = v else { return None };
    if t.tag != "!Sub" {
        return None;
    }
    let text = t.value.as_str()?.to_owned();
    let mut refs = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}')? + start;
        let name = &rest[start + 2..end];
        refs.push(name.split_once('.').map_or(name, |(id, _)| id).to_owned());
        rest = &rest[end + 1..];
    }
    Some((text, refs))
}

/// The function a Lambda proxy integration's `IntegrationUri` invokes:
/// `!Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations`
/// or `!GetAtt Fn.Arn`.
fn function_of_uri(uri: &Value) -> Option<String> {
    if let Some((id, Some(attr))) = reference_target(uri) {
        return (attr == "Arn").then_some(id);
    }
    let Value::Tagged(t) = uri else { return None };
    let text = t.value.as_str()?;
    let start = text.find("/functions/${")? + "/functions/${".len();
    let end = text[start..].find('}')? + start;
    text[start..end].strip_suffix(".Arn").map(str::to_owned)
}

impl Template {
    /// Reads the template at `path`.
    ///
    /// # Errors
    /// I/O or YAML errors.
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    /// The project's `template.yaml`, found from this crate's location.
    ///
    /// # Errors
    /// See [`Template::load`].
    pub fn project() -> Result<Self, TemplateError> {
        Self::load(&project_root().join("template.yaml"))
    }

    /// Parses template text.
    ///
    /// # Errors
    /// YAML errors.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        Ok(Self { root: serde_yaml::from_str(text)? })
    }

    fn resources(&self) -> Vec<(String, &Value)> {
        get(&self.root, "Resources")
            .and_then(Value::as_mapping)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v))).collect())
            .unwrap_or_default()
    }

    fn resources_of(&self, kind: &str) -> Vec<(String, &Value)> {
        self.resources().into_iter().filter(|(_, r)| get_str(r, "Type").as_deref() == Some(kind)).collect()
    }

    /// The resource type of a logical id.
    pub fn resource_type(&self, logical_id: &str) -> Option<String> {
        self.resources().into_iter().find(|(id, _)| id == logical_id).and_then(|(_, r)| get_str(r, "Type"))
    }

    /// Default values of the template's parameters.
    pub fn parameter_defaults(&self) -> BTreeMap<String, String> {
        get(&self.root, "Parameters")
            .and_then(Value::as_mapping)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), get_str(v, "Default")?))).collect())
            .unwrap_or_default()
    }

    /// Every parameter name.
    pub fn parameter_names(&self) -> Vec<String> {
        get(&self.root, "Parameters")
            .and_then(Value::as_mapping)
            .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// Every DynamoDB table.
    pub fn tables(&self) -> Vec<TableSpec> {
        self.resources_of("AWS::DynamoDB::Table")
            .into_iter()
            .map(|(id, r)| {
                let p = get(r, "Properties").cloned().unwrap_or(Value::Null);
                let attributes = get(&p, "AttributeDefinitions")
                    .and_then(Value::as_sequence)
                    .map(|s| {
                        s.iter()
                            .filter_map(|a| Some((get_str(a, "AttributeName")?, get_str(a, "AttributeType")?)))
                            .collect()
                    })
                    .unwrap_or_default();
                let indexes = get(&p, "GlobalSecondaryIndexes")
                    .and_then(Value::as_sequence)
                    .map(|s| {
                        s.iter()
                            .filter_map(|g| {
                                Some(IndexSpec {
                                    name: get_str(g, "IndexName")?,
                                    keys: key_elements(get(g, "KeySchema")),
                                    projection: get(g, "Projection")
                                        .and_then(|p| get_str(p, "ProjectionType"))
                                        .unwrap_or_else(|| "ALL".into()),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let ttl_attribute = get(&p, "TimeToLiveSpecification").and_then(|t| get_str(t, "AttributeName"));
                TableSpec {
                    logical_id: id,
                    attributes,
                    keys: key_elements(get(&p, "KeySchema")),
                    indexes,
                    ttl_attribute,
                }
            })
            .collect()
    }

    /// Every SQS queue.
    pub fn queues(&self) -> Vec<QueueSpec> {
        self.resources_of("AWS::SQS::Queue")
            .into_iter()
            .map(|(id, r)| {
                let p = get(r, "Properties").cloned().unwrap_or(Value::Null);
                let redrive = get(&p, "RedrivePolicy").and_then(|rp| {
                    let (target, _) = reference_target(get(rp, "deadLetterTargetArn")?)?;
                    Some((target, get_u32(rp, "maxReceiveCount")?))
                });
                QueueSpec {
                    logical_id: id,
                    visibility_timeout: get_u32(&p, "VisibilityTimeout"),
                    message_retention: get_u32(&p, "MessageRetentionPeriod"),
                    redrive,
                }
            })
            .collect()
    }

    /// Logical ids of every Secrets Manager secret.
    pub fn secrets(&self) -> Vec<String> {
        self.resources_of("AWS::SecretsManager::Secret").into_iter().map(|(id, _)| id).collect()
    }

    /// Every Lambda function with its binary, environment, routes and event sources.
    ///
    /// # Errors
    /// [`TemplateError::Shape`] when a function names no binary.
    pub fn functions(&self) -> Result<Vec<FunctionSpec>, TemplateError> {
        let globals = get(&self.root, "Globals")
            .and_then(|g| get(g, "Function"))
            .and_then(|f| get(f, "Environment"))
            .and_then(|e| get(e, "Variables"))
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        for (id, r) in self.resources_of("AWS::Serverless::Function") {
            let binary = get(r, "Metadata")
                .and_then(|m| get(m, "BuildProperties"))
                .and_then(|b| get_str(b, "Binary"))
                .ok_or_else(|| shape(format!("function {id} has no Metadata.BuildProperties.Binary")))?;
            let props = get(r, "Properties").cloned().unwrap_or(Value::Null);
            let mut environment = BTreeMap::new();
            let own = get(&props, "Environment")
                .and_then(|e| get(e, "Variables"))
                .and_then(Value::as_mapping)
                .cloned()
                .unwrap_or_default();
            for (k, v) in globals.iter().chain(own.iter()) {
                if let Some(k) = k.as_str() {
                    environment.insert(k.to_owned(), v.clone());
                }
            }
            let mut http_routes = Vec::new();
            let mut sqs_sources = Vec::new();
            let mut schedules = Vec::new();
            if let Some(events) = get(&props, "Events").and_then(Value::as_mapping) {
                for (_, ev) in events {
                    let ep = get(ev, "Properties").cloned().unwrap_or(Value::Null);
                    match get_str(ev, "Type").as_deref() {
                        Some("HttpApi") => {
                            let method = get_str(&ep, "Method")
                                .ok_or_else(|| shape(format!("{id}: HttpApi event without Method")))?;
                            let path = get_str(&ep, "Path")
                                .ok_or_else(|| shape(format!("{id}: HttpApi event without Path")))?;
                            http_routes.push((method.to_uppercase(), path));
                        }
                        Some("SQS") => {
                            let (queue, _) = get(&ep, "Queue")
                                .and_then(reference_target)
                                .ok_or_else(|| shape(format!("{id}: SQS event without a !GetAtt Queue")))?;
                            sqs_sources.push(SqsSource {
                                queue_logical_id: queue,
                                batch_size: get_u32(&ep, "BatchSize").unwrap_or(10),
                            });
                        }
                        Some("Schedule") => {
                            schedules.push(
                                get_str(&ep, "Schedule")
                                    .ok_or_else(|| shape(format!("{id}: Schedule event without Schedule")))?,
                            );
                        }
                        _ => {}
                    }
                }
            }
            let url_path = get(r, "Metadata").and_then(|m| get_str(m, "LocalPath"));
            let policies = match get(&props, "Policies") {
                Some(Value::Sequence(items)) => items.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(single) => vec![single.clone()],
            };
            let tracing = get_str(&props, "Tracing").or_else(|| {
                get(&self.root, "Globals").and_then(|g| get(g, "Function")).and_then(|f| get_str(f, "Tracing"))
            });
            out.push(FunctionSpec {
                logical_id: id,
                binary,
                environment,
                http_routes,
                url_path,
                sqs_sources,
                schedules,
                ws_routes: Vec::new(),
                policies,
                has_role: get(&props, "Role").is_some(),
                tracing_active: tracing.as_deref() == Some("Active"),
            });
        }
        for api in self.websocket_apis()? {
            for (route_key, function) in api.routes {
                let f = out.iter_mut().find(|f| f.logical_id == function).ok_or_else(|| {
                    shape(format!("WebSocket route {route_key} invokes {function}, which is not a function"))
                })?;
                f.ws_routes.push(route_key);
            }
        }
        out.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
        Ok(out)
    }

    /// Every WebSocket API with its routes, each route resolved through its integration to the
    /// function it invokes.
    ///
    /// # Errors
    /// [`TemplateError::Shape`] when a route has no `RouteKey`, its `Target` is not
    /// `integrations/<integration>`, or the integration's `IntegrationUri` names no function
    /// (`${<Function>.Arn}` or `!GetAtt <Function>.Arn`).
    pub fn websocket_apis(&self) -> Result<Vec<WebSocketApiSpec>, TemplateError> {
        let mut apis: Vec<WebSocketApiSpec> = self
            .resources_of("AWS::ApiGatewayV2::Api")
            .into_iter()
            .filter_map(|(id, r)| {
                let p = get(r, "Properties")?;
                (get_str(p, "ProtocolType").as_deref() == Some("WEBSOCKET")).then(|| WebSocketApiSpec {
                    logical_id: id,
                    route_selection_expression: get_str(p, "RouteSelectionExpression").unwrap_or_default(),
                    routes: Vec::new(),
                })
            })
            .collect();
        for (id, r) in self.resources_of("AWS::ApiGatewayV2::Route") {
            let p = get(r, "Properties").cloned().unwrap_or(Value::Null);
            let Some((api_id, _)) = get(&p, "ApiId").and_then(reference_target) else { continue };
            let Some(api) = apis.iter_mut().find(|a| a.logical_id == api_id) else { continue };
            let route_key = get_str(&p, "RouteKey").ok_or_else(|| shape(format!("route {id} has no RouteKey")))?;
            let integration = get(&p, "Target")
                .and_then(sub_references)
                .and_then(|(text, refs)| text.starts_with("integrations/").then_some(refs))
                .and_then(|refs| refs.into_iter().next())
                .ok_or_else(|| shape(format!("route {id}: Target is not !Sub integrations/${{<Integration>}}")))?;
            let uri = self
                .resources()
                .into_iter()
                .find(|(i, _)| *i == integration)
                .and_then(|(_, r)| get(r, "Properties").and_then(|p| get(p, "IntegrationUri")).cloned())
                .ok_or_else(|| shape(format!("route {id}: integration {integration} has no IntegrationUri")))?;
            let function = function_of_uri(&uri).ok_or_else(|| {
                shape(format!("route {id}: the IntegrationUri of {integration} names no function's Arn"))
            })?;
            api.routes.push((route_key, function));
        }
        for api in &mut apis {
            api.routes.sort();
        }
        Ok(apis)
    }
}

/// The repository root (two levels above this crate).
pub fn project_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| Path::new(".").to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS_TEMPLATE: &str = r#"
Resources:
  WebSocketApi:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: purse-ws
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  PingFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: ws_ping
  ConnectFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: ws_connect
  PingIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref WebSocketApi
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${PingFunction.Arn}/invocations
  PingRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref WebSocketApi
      RouteKey: ping
      Target: !Sub integrations/${PingIntegration}
  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref WebSocketApi
      IntegrationType: AWS_PROXY
      IntegrationUri: !GetAtt ConnectFunction.Arn
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref WebSocketApi
      RouteKey: $connect
      Target: !Sub integrations/${ConnectIntegration}
"#;

    #[test]
    fn a_websocket_route_is_traced_through_its_integration_to_its_function() {
        let t = Template::parse(WS_TEMPLATE).unwrap();
        let apis = t.websocket_apis().unwrap();
        assert_eq!(
            apis,
            [WebSocketApiSpec {
                logical_id: "WebSocketApi".into(),
                route_selection_expression: "$request.body.action".into(),
                routes: vec![("$connect".into(), "ConnectFunction".into()), ("ping".into(), "PingFunction".into())],
            }]
        );
        let functions = t.functions().unwrap();
        let routes: Vec<_> = functions.iter().map(|f| (f.binary.as_str(), f.ws_routes.clone())).collect();
        assert_eq!(routes, [("ws_connect", vec!["$connect".to_owned()]), ("ws_ping", vec!["ping".to_owned()])]);
    }

    #[test]
    fn a_websocket_route_without_a_usable_target_is_a_template_error() {
        let broken = WS_TEMPLATE.replace("Target: !Sub integrations/${PingIntegration}", "Target: PingIntegration");
        let err = Template::parse(&broken).unwrap().websocket_apis().unwrap_err();
        assert!(err.to_string().contains("route PingRoute: Target"), "{err}");

        let no_function = WS_TEMPLATE.replace("${PingFunction.Arn}", "${AWS::Region}");
        let err = Template::parse(&no_function).unwrap().functions().unwrap_err();
        assert!(err.to_string().contains("names no function"), "{err}");
    }

    #[test]
    fn the_project_template_routes_every_ws_function_and_only_those() {
        let t = Template::project().unwrap();
        let apis = t.websocket_apis().unwrap();
        assert_eq!(apis.len(), 1, "one WebSocket API");
        assert_eq!(apis[0].route_selection_expression, "$request.body.action");
        for f in t.functions().unwrap() {
            assert_eq!(f.binary.starts_with("ws_"), !f.ws_routes.is_empty(), "{}: {:?}", f.logical_id, f.ws_routes);
        }
        let keys: Vec<_> = apis[0].routes.iter().map(|(k, _)| k.as_str()).collect();
        for key in ["$connect", "$disconnect", "$default", "ping"] {
            assert!(keys.contains(&key), "no {key} route: {keys:?}");
        }
    }
}
