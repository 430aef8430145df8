"""template.yaml keeps its production hardening.

Fails when, in template.yaml:

- the customer managed key is missing, does not rotate, is not kept when the stack goes
  (DeletionPolicy and UpdateReplacePolicy Retain), has no alias `alias/purse-<stage>`, or its
  policy lets anyone use it for data (Encrypt, Decrypt, GenerateDataKey*, ReEncrypt*, CreateGrant,
  `kms:*`) other than through DynamoDB, SQS or Secrets Manager by callers of this account;
- the table, a queue or a secret is not encrypted with that key;
- the table lacks point-in-time recovery, or its deletion protection is not on in production
  only (`!If [IsProduction, true, false]`, IsProduction being Stage = production);
- a function's effective LoggingConfig (Globals merged with its own) is not JSON into a log
  group of its own that has a retention, or its effective Tracing is not Active;
- a public endpoint (a Function URL, a WebSocket route's function, an unauthenticated HTTP route:
  register and login) has no ReservedConcurrentExecutions;
- an SQS consumer has no ReservedConcurrentExecutions, or its SQS event's ScalingConfig
  MaximumConcurrency is missing or not the same value (an event source allowed to invoke more than
  is reserved gets its batches throttled, and throttled receives push messages to the DLQ);
- the concurrency the template reserves (with its parameter defaults) leaves fewer than 100 of
  a 1000 account limit unreserved, or differs from the total docs/deploy.md states;
- a WebSocket API stage or the HTTP API has no default route throttling;
- the HTTP API's CORS allows another origin than the web app's CloudFront distribution (plus the
  WebAppDevOrigins parameter, empty in production) or allows credentials;
- a stage's parameter_overrides in samconfig.toml misses a parameter that has no default, names
  one the template does not have, or gives a value its AllowedPattern, AllowedValues or
  MinValue/MaxValue refuse (CloudFormation would refuse the deploy).

Every check also runs on copies of the project's template broken on purpose, to show it fails.

Run: python -m unittest discover -s tools/lint -p 'test_*.py'
"""

import copy
import fnmatch
import re
import shlex
import tomllib
import unittest
from pathlib import Path

from test_template_alarms import get_att, load, ref, resources

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
SAMCONFIG = ROOT / "samconfig.toml"
STAGES = ("staging", "production")

FUNCTION = "AWS::Serverless::Function"
# Routes anyone can call without a token (each invokes a function that does real work: a
# password hash, a user write).
UNAUTHENTICATED_ROUTES = {("POST", "/v1/auth/register"), ("POST", "/v1/auth/login")}
# What uses the key for data, or lets a principal give itself that use (a grant).
KEY_USE_ACTIONS = ["kms:encrypt", "kms:decrypt", "kms:generatedatakey", "kms:generatedatakeywithoutplaintext",
                   "kms:generatedatakeypair", "kms:generatedatakeypairwithoutplaintext", "kms:reencryptfrom",
                   "kms:reencryptto", "kms:creategrant"]
SERVICES = ("dynamodb", "sqs", "secretsmanager")
ACCOUNT_CONCURRENCY = 1000  # the usual regional default
MIN_UNRESERVED = 100  # AWS keeps this much unreserved


def props(resource):
    return resource.get("Properties") or {}


def refers_to(value, logical_id):
    """`!Ref X`, `!GetAtt X.Arn` (or any `!GetAtt X.*`)."""
    att = get_att(value)
    return ref(value) == logical_id or (att is not None and att[0] == logical_id)


def as_list(value):
    return value if isinstance(value, list) else [value]


def globals_function(template):
    return ((template.get("Globals") or {}).get("Function")) or {}


def effective(template, fn, name):
    """A function property as SAM applies it: its own, merged over Globals' (maps merge)."""
    own = props(template["Resources"][fn]).get(name)
    glob = globals_function(template).get(name)
    if isinstance(own, dict) and isinstance(glob, dict):
        return {**glob, **own}
    return own if own is not None else glob


def parameter_default(template, value):
    """An int from a literal or from `!Ref Param`'s default, else None."""
    if ref(value):
        value = ((template.get("Parameters") or {}).get(ref(value)) or {}).get("Default")
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def websocket_functions(template):
    """Functions a WebSocket API route invokes (Route -> integrations/<Integration> -> function)."""
    apis = {k for k, v in resources(template, "AWS::ApiGatewayV2::Api").items() if props(v).get("ProtocolType") == "WEBSOCKET"}
    integrations = resources(template, "AWS::ApiGatewayV2::Integration")
    functions = set(resources(template, FUNCTION))
    out = set()
    for route in resources(template, "AWS::ApiGatewayV2::Route").values():
        p = props(route)
        if ref(p.get("ApiId")) not in apis:
            continue
        target = p.get("Target")
        target = target.get("Fn::Sub") if isinstance(target, dict) else target
        m = re.fullmatch(r"integrations/\$\{(\w+)\}", target or "")
        if not m or m.group(1) not in integrations:
            continue
        uri = props(integrations[m.group(1)]).get("IntegrationUri")
        uri = uri.get("Fn::Sub", "") if isinstance(uri, dict) else str(uri)
        out.update(f for f in re.findall(r"\$\{(\w+)\.Arn\}", uri) if f in functions)
    return out


def public_functions(template):
    """Function logical id -> why it is public."""
    out = {}
    for fn, r in resources(template, FUNCTION).items():
        p = props(r)
        if p.get("FunctionUrlConfig"):
            out[fn] = "a Function URL"
        for ev in (p.get("Events") or {}).values():
            ep = ev.get("Properties") or {}
            if ev.get("Type") == "HttpApi" and (str(ep.get("Method", "")).upper(), ep.get("Path")) in UNAUTHENTICATED_ROUTES:
                out[fn] = f"the unauthenticated route {ep['Method'].upper()} {ep['Path']}"
    for fn in websocket_functions(template):
        out[fn] = "a WebSocket route"
    return out


def sqs_consumers(template):
    """Function logical id -> its SQS events' properties."""
    out = {}
    for fn, r in resources(template, FUNCTION).items():
        events = [ev.get("Properties") or {} for ev in (props(r).get("Events") or {}).values() if ev.get("Type") == "SQS"]
        if events:
            out[fn] = events
    return out


def reserved_total(template):
    total = 0
    for fn, r in resources(template, FUNCTION).items():
        value = props(r).get("ReservedConcurrentExecutions")
        if value is not None:
            total += parameter_default(template, value) or 0
    return total


def key_problems(template):
    out = []
    keys = resources(template, "AWS::KMS::Key")
    if len(keys) != 1:
        return [f"the template declares {len(keys)} KMS keys; one customer managed key is expected"]
    key_id, key = next(iter(keys.items()))
    p = props(key)
    if p.get("EnableKeyRotation") is not True:
        out.append(f"key {key_id} does not enable rotation")
    for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
        if key.get(policy) != "Retain":
            out.append(f"key {key_id} has no {policy}: Retain")
    aliases = [a for a in resources(template, "AWS::KMS::Alias").values() if refers_to(props(a).get("TargetKeyId"), key_id)]
    if not any(props(a).get("AliasName") == {"Fn::Sub": "alias/purse-${Stage}"} for a in aliases):
        out.append(f"key {key_id} has no alias alias/purse-${{Stage}}")
    via_ok = False
    for st in (p.get("KeyPolicy") or {}).get("Statement") or []:
        if st.get("Effect") != "Allow":
            continue
        patterns = [a.lower() for a in as_list(st.get("Action"))]
        uses = sorted(u for u in KEY_USE_ACTIONS if any(fnmatch.fnmatchcase(u, p) for p in patterns))
        if not uses:
            continue
        cond = (st.get("Condition") or {}).get("StringEquals") or {}
        via = [v.get("Fn::Sub", v) if isinstance(v, dict) else v for v in as_list(cond.get("kms:ViaService"))]
        services = {s.split(".")[0] for s in via if isinstance(s, str)}
        caller = ref(cond.get("kms:CallerAccount")) == "AWS::AccountId"
        if not (services and services <= set(SERVICES) and caller):
            out.append(
                f"key {key_id}: statement {st.get('Sid', '?')} allows {', '.join(uses)} "
                "other than through DynamoDB, SQS or Secrets Manager by this account "
                "(StringEquals kms:ViaService and kms:CallerAccount)"
            )
        elif services == set(SERVICES):
            via_ok = True
    if not via_ok:
        out.append(f"key {key_id}: no statement lets this account use it through DynamoDB, SQS and Secrets Manager")
    return out


def encryption_problems(template):
    out = []
    keys = list(resources(template, "AWS::KMS::Key"))
    key = keys[0] if keys else None
    for name, t in resources(template, "AWS::DynamoDB::Table").items():
        sse = props(t).get("SSESpecification") or {}
        if not (sse.get("SSEEnabled") is True and sse.get("SSEType") == "KMS" and refers_to(sse.get("KMSMasterKeyId"), key)):
            out.append(f"table {name} is not encrypted with the customer managed key (SSESpecification SSEType KMS, KMSMasterKeyId)")
    for name, q in resources(template, "AWS::SQS::Queue").items():
        if not refers_to(props(q).get("KmsMasterKeyId"), key):
            out.append(f"queue {name} is not encrypted with the customer managed key (KmsMasterKeyId)")
    for name, s in resources(template, "AWS::SecretsManager::Secret").items():
        if not refers_to(props(s).get("KmsKeyId"), key):
            out.append(f"secret {name} is not encrypted with the customer managed key (KmsKeyId)")
    return out


def table_problems(template):
    out = []
    cond = (template.get("Conditions") or {}).get("IsProduction")
    if cond != {"Fn::Equals": [{"Ref": "Stage"}, "production"]}:
        out.append("condition IsProduction is not !Equals [!Ref Stage, production]")
    for name, t in resources(template, "AWS::DynamoDB::Table").items():
        p = props(t)
        if (p.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled") is not True:
            out.append(f"table {name} has no point-in-time recovery")
        if p.get("DeletionProtectionEnabled") != {"Fn::If": ["IsProduction", True, False]}:
            out.append(f"table {name}: DeletionProtectionEnabled is not !If [IsProduction, true, false]")
    return out


def logging_problems(template):
    out = []
    groups = resources(template, "AWS::Logs::LogGroup")
    seen = {}
    for fn in resources(template, FUNCTION):
        cfg = effective(template, fn, "LoggingConfig") or {}
        if cfg.get("LogFormat") != "JSON":
            out.append(f"function {fn} does not log in JSON (LoggingConfig LogFormat)")
        group = ref(cfg.get("LogGroup"))
        if group not in groups:
            out.append(f"function {fn} has no LoggingConfig LogGroup: !Ref to a log group of the template")
        else:
            if props(groups[group]).get("RetentionInDays") is None:
                out.append(f"log group {group} of {fn} has no RetentionInDays")
            if group in seen:
                out.append(f"functions {seen[group]} and {fn} share the log group {group}")
            seen[group] = fn
        if effective(template, fn, "Tracing") != "Active":
            out.append(f"function {fn} does not have Tracing: Active")
    return out


def concurrency_problems(template, deploy_doc=None):
    out = []
    fns = resources(template, FUNCTION)
    for fn, why in sorted(public_functions(template).items()):
        if props(fns[fn]).get("ReservedConcurrentExecutions") is None:
            out.append(f"function {fn} ({why}) has no ReservedConcurrentExecutions")
    for fn, events in sorted(sqs_consumers(template).items()):
        reserved = props(fns[fn]).get("ReservedConcurrentExecutions")
        if reserved is None:
            out.append(f"SQS consumer {fn} has no ReservedConcurrentExecutions")
            continue
        for ep in events:
            maximum = (ep.get("ScalingConfig") or {}).get("MaximumConcurrency")
            if maximum is None or (maximum != reserved and (parameter_default(template, maximum) or 0) > (parameter_default(template, reserved) or 0)):
                out.append(f"SQS consumer {fn}: its event's ScalingConfig MaximumConcurrency is missing or above its reserved concurrency")
    total = reserved_total(template)
    if ACCOUNT_CONCURRENCY - total < MIN_UNRESERVED:
        out.append(f"the template reserves {total} concurrency: fewer than {MIN_UNRESERVED} of {ACCOUNT_CONCURRENCY} stay unreserved")
    if deploy_doc is not None and f"reserves {total} " not in deploy_doc:
        out.append(f"docs/deploy.md does not state the total reserved concurrency (\"reserves {total} \")")
    return out


def throttling_problems(template):
    out = []
    ws_apis = {k for k, v in resources(template, "AWS::ApiGatewayV2::Api").items() if props(v).get("ProtocolType") == "WEBSOCKET"}
    staged = set()
    for name, stage in resources(template, "AWS::ApiGatewayV2::Stage").items():
        p = props(stage)
        if ref(p.get("ApiId")) in ws_apis:
            staged.add(ref(p.get("ApiId")))
            s = p.get("DefaultRouteSettings") or {}
            if s.get("ThrottlingBurstLimit") is None or s.get("ThrottlingRateLimit") is None:
                out.append(f"WebSocket stage {name} has no DefaultRouteSettings throttling")
    for api in sorted(ws_apis - staged):
        out.append(f"WebSocket API {api} has no stage")
    for name, api in resources(template, "AWS::Serverless::HttpApi").items():
        s = props(api).get("DefaultRouteSettings") or {}
        if s.get("ThrottlingBurstLimit") is None or s.get("ThrottlingRateLimit") is None:
            out.append(f"HTTP API {name} has no DefaultRouteSettings throttling")
    return out


def cors_problems(template):
    out = []
    web = "https://${WebAppDistribution.DomainName}"
    for name, api in resources(template, "AWS::Serverless::HttpApi").items():
        cors = props(api).get("CorsConfiguration")
        if not isinstance(cors, dict):
            out.append(f"HTTP API {name} has no CorsConfiguration")
            continue
        origins = cors.get("AllowOrigins")
        branches = origins["Fn::If"][1:] if isinstance(origins, dict) and "Fn::If" in origins else [origins]
        for branch in branches:
            if isinstance(branch, dict) and "Fn::Split" in branch:
                ok = branch["Fn::Split"] == [",", {"Fn::Sub": web + ",${WebAppDevOrigins}"}]
            else:
                ok = branch == [{"Fn::Sub": web}]
            if not ok:
                out.append(f"HTTP API {name}: CORS AllowOrigins is not the web app's origin ({web}, plus WebAppDevOrigins)")
        if cors.get("AllowCredentials") is not False:
            out.append(f"HTTP API {name}: CORS AllowCredentials is not false")
    return out


def parameter_overrides(text):
    """Key -> value of a parameter_overrides string, split like SAM CLI does (shell words)."""
    out = {}
    for word in shlex.split(text):
        key, _, value = word.partition("=")
        out[key] = value
    return out


def samconfig_problems(template, samconfig):
    out = []
    params = template.get("Parameters") or {}
    for stage in STAGES:
        deploy = ((samconfig.get(stage) or {}).get("deploy") or {}).get("parameters") or {}
        given = parameter_overrides(deploy.get("parameter_overrides", ""))
        for name, spec in params.items():
            if "Default" not in spec and name not in given:
                out.append(f"samconfig.toml [{stage}]: parameter {name} has no default and is not in parameter_overrides")
        for name, value in given.items():
            spec = params.get(name)
            if spec is None:
                out.append(f"samconfig.toml [{stage}]: {name} is not a parameter of the template")
                continue
            if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
                out.append(f"samconfig.toml [{stage}]: {name}={value} does not match its AllowedPattern")
            if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
                out.append(f"samconfig.toml [{stage}]: {name}={value} is not one of its AllowedValues")
            if spec.get("Type") == "Number":
                try:
                    number = float(value)
                except ValueError:
                    out.append(f"samconfig.toml [{stage}]: {name}={value} is not a number")
                    continue
                if ("MinValue" in spec and number < float(spec["MinValue"])) or ("MaxValue" in spec and number > float(spec["MaxValue"])):
                    out.append(f"samconfig.toml [{stage}]: {name}={value} is outside its MinValue/MaxValue")
        if given.get("Stage") != stage:
            out.append(f"samconfig.toml [{stage}]: Stage is not {stage}")
    return out


def problems(template, deploy_doc=None):
    return (
        key_problems(template)
        + encryption_problems(template)
        + table_problems(template)
        + logging_problems(template)
        + concurrency_problems(template, deploy_doc)
        + throttling_problems(template)
        + cors_problems(template)
    )


PROJECT = load(TEMPLATE.read_text())


def broken():
    return copy.deepcopy(PROJECT)


def res(t, name):
    return t["Resources"][name]["Properties"]


SAMCONFIG_DATA = tomllib.loads(SAMCONFIG.read_text())


class ProjectTemplate(unittest.TestCase):
    def test_the_project_template_is_hardened(self):
        found = problems(PROJECT, DEPLOY_DOC.read_text()) + samconfig_problems(PROJECT, SAMCONFIG_DATA)
        self.assertEqual(found, [], "template.yaml hardening:\n  " + "\n  ".join(found))

    def test_the_checks_see_what_they_check(self):
        # A parse that found nothing would pass vacuously.
        self.assertEqual(len(resources(PROJECT, FUNCTION)), len(resources(PROJECT, "AWS::Logs::LogGroup")) - 1)
        public = public_functions(PROJECT)
        for fn in ("RevioWebhookFunction", "KycWebhookFunction", "TelephonyVoiceWebhookFunction",
                   "TelephonyStatusWebhookFunction", "WsConnectFunction", "WsSignalFunction",
                   "AuthRegisterFunction", "AuthLoginFunction"):
            self.assertIn(fn, public)
        self.assertNotIn("WalletGetFunction", public)
        self.assertEqual(len(websocket_functions(PROJECT)), 9)
        self.assertEqual(set(sqs_consumers(PROJECT)), {
            "RevioEventsConsumerFunction", "KycEventsConsumerFunction", "ReferralRewardsConsumerFunction",
            "PayoutsConsumerFunction", "CallBillingConsumerFunction"})
        self.assertGreaterEqual(len(resources(PROJECT, "AWS::SQS::Queue")), 10)
        self.assertGreaterEqual(len(resources(PROJECT, "AWS::SecretsManager::Secret")), 6)


class BrokenCopies(unittest.TestCase):
    def assertCaught(self, t, fragment):
        found = problems(t)
        self.assertTrue(any(fragment in p for p in found), f"{fragment!r} not in {found}")

    def test_a_key_without_rotation_is_caught(self):
        t = broken()
        res(t, "PurseKey")["EnableKeyRotation"] = False
        self.assertCaught(t, "does not enable rotation")

    def test_a_key_deleted_with_the_stack_is_caught(self):
        t = broken()
        del t["Resources"]["PurseKey"]["DeletionPolicy"]
        self.assertCaught(t, "has no DeletionPolicy: Retain")

    def test_a_key_the_root_may_use_directly_is_caught(self):
        t = broken()
        res(t, "PurseKey")["KeyPolicy"]["Statement"][0]["Action"] = "kms:*"
        self.assertCaught(t, "other than through DynamoDB, SQS or Secrets Manager")

    def test_an_administrator_allowed_to_create_grants_is_caught(self):
        t = broken()
        res(t, "PurseKey")["KeyPolicy"]["Statement"][0]["Action"].append("kms:Create*")
        self.assertCaught(t, "statement AccountAdministersTheKey allows kms:creategrant other than through")

    def test_a_key_usable_from_another_account_is_caught(self):
        t = broken()
        for st in res(t, "PurseKey")["KeyPolicy"]["Statement"]:
            st.get("Condition", {}).get("StringEquals", {}).pop("kms:CallerAccount", None)
        self.assertCaught(t, "other than through DynamoDB, SQS or Secrets Manager")

    def test_a_key_usable_through_another_service_is_caught(self):
        t = broken()
        st = res(t, "PurseKey")["KeyPolicy"]["Statement"][1]
        st["Condition"]["StringEquals"]["kms:ViaService"].append({"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"})
        self.assertCaught(t, "other than through DynamoDB, SQS or Secrets Manager")

    def test_a_missing_alias_is_caught(self):
        t = broken()
        del t["Resources"]["PurseKeyAlias"]
        self.assertCaught(t, "has no alias")

    def test_a_table_on_the_aws_owned_key_is_caught(self):
        t = broken()
        res(t, "PurseTable")["SSESpecification"] = {"SSEEnabled": True}
        self.assertCaught(t, "table PurseTable is not encrypted")

    def test_a_queue_with_sqs_managed_encryption_is_caught(self):
        t = broken()
        q = res(t, "PayoutsDLQ")
        del q["KmsMasterKeyId"]
        q["SqsManagedSseEnabled"] = True
        self.assertCaught(t, "queue PayoutsDLQ is not encrypted")

    def test_a_secret_on_the_default_key_is_caught(self):
        t = broken()
        del res(t, "PiiKeysSecret")["KmsKeyId"]
        self.assertCaught(t, "secret PiiKeysSecret is not encrypted")

    def test_deletion_protection_on_every_stage_is_caught(self):
        t = broken()
        res(t, "PurseTable")["DeletionProtectionEnabled"] = True
        self.assertCaught(t, "DeletionProtectionEnabled is not !If [IsProduction, true, false]")

    def test_a_production_condition_on_the_wrong_stage_is_caught(self):
        t = broken()
        t["Conditions"]["IsProduction"] = {"Fn::Equals": [{"Ref": "Stage"}, "staging"]}
        self.assertCaught(t, "condition IsProduction")

    def test_a_table_without_point_in_time_recovery_is_caught(self):
        t = broken()
        del res(t, "PurseTable")["PointInTimeRecoverySpecification"]
        self.assertCaught(t, "has no point-in-time recovery")

    def test_text_logs_are_caught(self):
        t = broken()
        t["Globals"]["Function"]["LoggingConfig"]["LogFormat"] = "Text"
        self.assertCaught(t, "function WalletGetFunction does not log in JSON")

    def test_a_function_overriding_the_format_is_caught(self):
        t = broken()
        res(t, "PayoutsConsumerFunction")["LoggingConfig"]["LogFormat"] = "Text"
        self.assertEqual([p for p in problems(t) if "JSON" in p], ["function PayoutsConsumerFunction does not log in JSON (LoggingConfig LogFormat)"])

    def test_a_function_without_its_log_group_is_caught(self):
        t = broken()
        del res(t, "MeGetFunction")["LoggingConfig"]
        self.assertCaught(t, "function MeGetFunction has no LoggingConfig LogGroup")

    def test_a_log_group_kept_forever_is_caught(self):
        t = broken()
        del res(t, "MeGetFunctionLogGroup")["RetentionInDays"]
        self.assertCaught(t, "log group MeGetFunctionLogGroup of MeGetFunction has no RetentionInDays")

    def test_two_functions_in_one_log_group_are_caught(self):
        t = broken()
        res(t, "MeGetFunction")["LoggingConfig"]["LogGroup"] = {"Ref": "WalletGetFunctionLogGroup"}
        self.assertCaught(t, "share the log group WalletGetFunctionLogGroup")

    def test_a_function_without_active_tracing_is_caught(self):
        t = broken()
        res(t, "CallSweeperFunction")["Tracing"] = "PassThrough"
        self.assertCaught(t, "function CallSweeperFunction does not have Tracing: Active")

    def test_an_uncapped_webhook_is_caught(self):
        t = broken()
        del res(t, "KycWebhookFunction")["ReservedConcurrentExecutions"]
        self.assertCaught(t, "function KycWebhookFunction (a Function URL) has no ReservedConcurrentExecutions")

    def test_an_uncapped_websocket_route_is_caught(self):
        t = broken()
        del res(t, "WsSignalFunction")["ReservedConcurrentExecutions"]
        self.assertCaught(t, "function WsSignalFunction (a WebSocket route) has no ReservedConcurrentExecutions")

    def test_an_uncapped_sign_in_is_caught(self):
        t = broken()
        del res(t, "AuthLoginFunction")["ReservedConcurrentExecutions"]
        self.assertCaught(t, "function AuthLoginFunction (the unauthenticated route POST /v1/auth/login)")

    def test_a_consumer_without_reserved_capacity_is_caught(self):
        t = broken()
        del res(t, "PayoutsConsumerFunction")["ReservedConcurrentExecutions"]
        self.assertCaught(t, "SQS consumer PayoutsConsumerFunction has no ReservedConcurrentExecutions")

    def test_an_event_source_allowed_beyond_the_reservation_is_caught(self):
        t = broken()
        res(t, "CallBillingConsumerFunction")["Events"]["Queue"]["Properties"]["ScalingConfig"]["MaximumConcurrency"] = 500
        self.assertCaught(t, "SQS consumer CallBillingConsumerFunction: its event's ScalingConfig MaximumConcurrency")

    def test_reserving_the_whole_account_is_caught(self):
        t = broken()
        t["Parameters"]["WsRouteConcurrency"]["Default"] = 100
        self.assertCaught(t, "fewer than 100 of 1000 stay unreserved")

    def test_a_deploy_guide_with_a_stale_total_is_caught(self):
        found = concurrency_problems(PROJECT, "the template reserves 12 of it")
        self.assertEqual(found, [f"docs/deploy.md does not state the total reserved concurrency (\"reserves {reserved_total(PROJECT)} \")"])

    def test_an_unthrottled_websocket_stage_is_caught(self):
        t = broken()
        del res(t, "WebSocketStage")["DefaultRouteSettings"]
        self.assertCaught(t, "WebSocket stage WebSocketStage has no DefaultRouteSettings throttling")

    def test_an_unthrottled_http_api_is_caught(self):
        t = broken()
        del res(t, "HttpApi")["DefaultRouteSettings"]["ThrottlingRateLimit"]
        self.assertCaught(t, "HTTP API HttpApi has no DefaultRouteSettings throttling")

    def test_cors_for_any_origin_is_caught(self):
        t = broken()
        res(t, "HttpApi")["CorsConfiguration"]["AllowOrigins"] = ["*"]
        self.assertCaught(t, "CORS AllowOrigins is not the web app's origin")

    def test_cors_with_an_extra_origin_in_production_is_caught(self):
        t = broken()
        origins = res(t, "HttpApi")["CorsConfiguration"]["AllowOrigins"]["Fn::If"]
        origins[2] = [{"Fn::Sub": "https://${WebAppDistribution.DomainName}"}, "https://evil.example"]
        self.assertCaught(t, "CORS AllowOrigins is not the web app's origin")

    def test_a_stage_without_the_toll_free_number_is_caught(self):
        config = copy.deepcopy(SAMCONFIG_DATA)
        deploy = config["production"]["deploy"]["parameters"]
        deploy["parameter_overrides"] = re.sub(r"TelephonyTollFreeNumber=\S+ ?", "", deploy["parameter_overrides"])
        self.assertEqual(samconfig_problems(PROJECT, config), [
            "samconfig.toml [production]: parameter TelephonyTollFreeNumber has no default and is not in parameter_overrides"])

    def test_a_stage_value_the_template_refuses_is_caught(self):
        config = copy.deepcopy(SAMCONFIG_DATA)
        deploy = config["staging"]["deploy"]["parameters"]
        deploy["parameter_overrides"] += " LogRetentionDays=45 AlarmEmail=not-an-address QueueConsumerConcurrency=1 Typo=1"
        self.assertCountEqual(samconfig_problems(PROJECT, config), [
            "samconfig.toml [staging]: LogRetentionDays=45 is not one of its AllowedValues",
            "samconfig.toml [staging]: AlarmEmail=not-an-address does not match its AllowedPattern",
            "samconfig.toml [staging]: QueueConsumerConcurrency=1 is outside its MinValue/MaxValue",
            "samconfig.toml [staging]: Typo is not a parameter of the template",
        ])

    def test_overrides_split_like_sam_cli(self):
        self.assertEqual(parameter_overrides("A=1 B='two words' C=\"x y\" D=''"), {"A": "1", "B": "two words", "C": "x y", "D": ""})

    def test_cors_with_credentials_is_caught(self):
        t = broken()
        res(t, "HttpApi")["CorsConfiguration"]["AllowCredentials"] = True
        self.assertCaught(t, "CORS AllowCredentials is not false")


if __name__ == "__main__":
    unittest.main()
