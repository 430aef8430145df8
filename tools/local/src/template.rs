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
            out.push(FunctionSpec {
                logical_id: id,
                binary,
                environment,
                http_routes,
                url_path,
                sqs_sources,
                schedules,
            });
        }
        out.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
        Ok(out)
    }
}

/// The repository root (two levels above this crate).
pub fn project_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| Path::new(".").to_path_buf())
}
