"""template.yaml's alarms cannot fall behind its functions and queues.

Fails when, in template.yaml:

- a function (AWS::Serverless::Function or AWS::Lambda::Function) has no AWS/Lambda `Errors`
  alarm or no AWS/Lambda `Throttles` alarm on its FunctionName;
- a dead-letter queue (a queue that some queue's RedrivePolicy names as deadLetterTargetArn) has
  no alarm on its depth (AWS/SQS ApproximateNumberOfMessagesVisible > 0 on its QueueName);
- an alarm has no action on the SNS alarm topic, or does not treat missing data as
  notBreaching;
- one of the business metrics that need a person (shared/src/metrics.rs) has no alarm;
- an HTTP API (AWS::Serverless::HttpApi) has no `5xx` alarm or no p99 `Latency` alarm
  (AWS/ApiGateway, dimensions ApiId and Stage);
- a money-path function (MONEY_PATH) has no p99 `Duration` alarm between 50 % and 90 % of its
  timeout;
- an alarm other than the per-function pairs is not named in docs/runbook.md (each has its
  entry there; the per-function pairs share two).

So a new function or queue comes with its alarms. The checks run on the project's template and,
to show they catch what they should, on small templates that break each rule.

Run: python -m unittest discover -s tools/lint -p 'test_*.py'
(PyYAML: in the project venv it comes with moto; any venv with PyYAML works.)
"""

import unittest
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"

FUNCTION_TYPES = {"AWS::Serverless::Function", "AWS::Lambda::Function"}
ALARM = "AWS::CloudWatch::Alarm"
# Business metrics (namespace Purse) that must each have an alarm.
ALARMED_METRICS = [
    "DeliveriesRejected",
    "ReconcileFindings",
    "WithdrawalReconcileFindings",
    "CasesOpened",
    "KycReviewsOpened",
]
# Functions that move money: each has a p99 Duration alarm near (50-90 % of) its timeout.
MONEY_PATH = [
    "DepositsCreateFunction",
    "WithdrawalsCreateFunction",
    "RevioEventsConsumerFunction",
    "PayoutsConsumerFunction",
    "CallBillingConsumerFunction",
    "ReferralRewardsConsumerFunction",
    "ReconcileDepositsFunction",
    "CallSweeperFunction",
]


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation's short tags as their long forms
    (`!Ref X` -> {"Ref": "X"}, `!GetAtt A.B` -> {"Fn::GetAtt": ["A", "B"]}, `!Sub s` -> {"Fn::Sub": s})."""


def _cfn_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + suffix: value}


_Loader.add_multi_constructor("!", _cfn_tag)


def load(text):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (SafeLoader subclass)


def ref(value):
    """The logical id of `!Ref X`, else None."""
    return value.get("Ref") if isinstance(value, dict) else None


def get_att(value):
    """(logical id, attribute) of `!GetAtt X.Attr`, else None."""
    if isinstance(value, dict) and isinstance(value.get("Fn::GetAtt"), list) and len(value["Fn::GetAtt"]) == 2:
        return tuple(value["Fn::GetAtt"])
    return None


def resources(template, *types):
    return {k: v for k, v in (template.get("Resources") or {}).items() if v.get("Type") in types}


def dimension(props, name):
    for d in props.get("Dimensions") or []:
        if d.get("Name") == name:
            return d.get("Value")
    return None


def dead_letter_queues(template):
    """Logical ids of the queues some queue's RedrivePolicy sends to."""
    found = set()
    for _, queue in resources(template, "AWS::SQS::Queue").items():
        target = ((queue.get("Properties") or {}).get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        att = get_att(target)
        if att and att[1] == "Arn":
            found.add(att[0])
        elif ref(target):
            found.add(ref(target))
    return found


def problems(template, runbook_text=None):
    """Every broken rule, as sentences; empty when the template is fine."""
    out = []
    alarms = {k: v.get("Properties") or {} for k, v in resources(template, ALARM).items()}
    topics = set(resources(template, "AWS::SNS::Topic"))
    if not topics:
        out.append("the template declares no SNS topic for alarms")

    per_function = set()
    for fn in resources(template, *FUNCTION_TYPES):
        for metric in ("Errors", "Throttles"):
            matching = [
                name
                for name, p in alarms.items()
                if p.get("Namespace") == "AWS/Lambda"
                and p.get("MetricName") == metric
                and ref(dimension(p, "FunctionName")) == fn
            ]
            per_function.update(matching)
            if not matching:
                out.append(f"function {fn} has no AWS/Lambda {metric} alarm (Dimensions FunctionName: !Ref {fn})")

    for dlq in sorted(dead_letter_queues(template)):
        ok = any(
            p.get("Namespace") == "AWS/SQS"
            and p.get("MetricName") == "ApproximateNumberOfMessagesVisible"
            and get_att(dimension(p, "QueueName")) == (dlq, "QueueName")
            and p.get("ComparisonOperator") == "GreaterThanThreshold"
            and float(p.get("Threshold", -1)) == 0
            for p in alarms.values()
        )
        if not ok:
            out.append(
                f"dead-letter queue {dlq} has no depth alarm "
                f"(AWS/SQS ApproximateNumberOfMessagesVisible > 0 on !GetAtt {dlq}.QueueName)"
            )

    for api in sorted(resources(template, "AWS::Serverless::HttpApi")):
        for metric, stat in (("5xx", None), ("Latency", "p99")):
            ok = any(
                p.get("Namespace") == "AWS/ApiGateway"
                and p.get("MetricName") == metric
                and ref(dimension(p, "ApiId")) == api
                and ref(dimension(p, "Stage")) == "Stage"
                and (stat is None or p.get("ExtendedStatistic") == stat)
                for p in alarms.values()
            )
            if not ok:
                out.append(f"HTTP API {api} has no AWS/ApiGateway {metric}{' ' + stat if stat else ''} alarm (dimensions ApiId, Stage)")

    functions = resources(template, *FUNCTION_TYPES)
    default_timeout = (((template.get("Globals") or {}).get("Function")) or {}).get("Timeout", 3)
    for fn in MONEY_PATH:
        if fn not in functions:
            continue
        timeout_ms = 1000 * float((functions[fn].get("Properties") or {}).get("Timeout", default_timeout))
        ok = any(
            p.get("Namespace") == "AWS/Lambda"
            and p.get("MetricName") == "Duration"
            and ref(dimension(p, "FunctionName")) == fn
            and p.get("ExtendedStatistic") == "p99"
            and 0.5 * timeout_ms <= float(p.get("Threshold", -1)) <= 0.9 * timeout_ms
            for p in alarms.values()
        )
        if not ok:
            out.append(f"money-path function {fn} has no p99 Duration alarm at 50-90 % of its {timeout_ms:.0f} ms timeout")

    for metric in ALARMED_METRICS:
        if not any(p.get("Namespace") == "Purse" and p.get("MetricName") == metric for p in alarms.values()):
            out.append(f"metric Purse/{metric} has no alarm")

    for name, p in sorted(alarms.items()):
        actions = {ref(a) for a in p.get("AlarmActions") or []}
        if not actions & topics:
            out.append(f"alarm {name} has no AlarmActions entry on the SNS topic ({', '.join(sorted(topics)) or 'none'})")
        for a in p.get("OKActions") or []:
            if ref(a) not in topics:
                out.append(f"alarm {name} has an OKActions entry that is not the SNS topic")
        if p.get("TreatMissingData") != "notBreaching":
            out.append(f"alarm {name} does not set TreatMissingData: notBreaching")
        if runbook_text is not None and name not in per_function and f"`{name}`" not in runbook_text:
            out.append(f"alarm {name} has no entry in docs/runbook.md (name it in backticks)")
    return out


class ProjectTemplate(unittest.TestCase):
    def test_every_function_queue_and_alarm_is_covered(self):
        template = load(TEMPLATE.read_text())
        found = problems(template, RUNBOOK.read_text())
        self.assertEqual(found, [], "template.yaml alarms:\n  " + "\n  ".join(found))

    def test_the_template_has_functions_and_dead_letter_queues_to_check(self):
        # Guards the checks themselves: a parse that found nothing would pass them vacuously.
        template = load(TEMPLATE.read_text())
        self.assertGreater(len(resources(template, *FUNCTION_TYPES)), 10)
        self.assertGreaterEqual(len(dead_letter_queues(template)), 1)
        self.assertTrue(set(MONEY_PATH) <= set(resources(template, *FUNCTION_TYPES)), "a MONEY_PATH function is gone")
        self.assertEqual(len(resources(template, "AWS::Serverless::HttpApi")), 1)


GOOD = """
Resources:
  Topic:
    Type: AWS::SNS::Topic
  Dlq:
    Type: AWS::SQS::Queue
  Work:
    Type: AWS::SQS::Queue
    Properties:
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Dlq.Arn
        maxReceiveCount: 5
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
  DlqAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Namespace: AWS/SQS
      MetricName: ApproximateNumberOfMessagesVisible
      Dimensions:
        - Name: QueueName
          Value: !GetAtt Dlq.QueueName
      Threshold: 0
      ComparisonOperator: GreaterThanThreshold
      TreatMissingData: notBreaching
      AlarmActions: [!Ref Topic]
  FnErrors:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Namespace: AWS/Lambda
      MetricName: Errors
      Dimensions: [{Name: FunctionName, Value: !Ref Fn}]
      TreatMissingData: notBreaching
      AlarmActions: [!Ref Topic]
  FnThrottles:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Namespace: AWS/Lambda
      MetricName: Throttles
      Dimensions: [{Name: FunctionName, Value: !Ref Fn}]
      TreatMissingData: notBreaching
      AlarmActions: [!Ref Topic]
      OKActions: [!Ref Topic]
"""


def good_with_metrics():
    template = load(GOOD)
    for metric in ALARMED_METRICS:
        template["Resources"][metric + "Alarm"] = {
            "Type": ALARM,
            "Properties": {
                "Namespace": "Purse",
                "MetricName": metric,
                "TreatMissingData": "notBreaching",
                "AlarmActions": [{"Ref": "Topic"}],
            },
        }
    return template


class TheChecks(unittest.TestCase):
    def test_a_complete_template_passes(self):
        self.assertEqual(problems(good_with_metrics()), [])

    def test_a_function_without_a_throttles_alarm_fails(self):
        t = good_with_metrics()
        del t["Resources"]["FnThrottles"]
        self.assertEqual(problems(t), ["function Fn has no AWS/Lambda Throttles alarm (Dimensions FunctionName: !Ref Fn)"])

    def test_an_errors_alarm_on_another_function_does_not_count(self):
        t = good_with_metrics()
        t["Resources"]["Other"] = {"Type": "AWS::Lambda::Function", "Properties": {}}
        found = problems(t)
        self.assertIn("function Other has no AWS/Lambda Errors alarm (Dimensions FunctionName: !Ref Other)", found)
        self.assertIn("function Other has no AWS/Lambda Throttles alarm (Dimensions FunctionName: !Ref Other)", found)

    def test_a_dead_letter_queue_without_a_depth_alarm_fails(self):
        t = good_with_metrics()
        del t["Resources"]["DlqAlarm"]
        self.assertEqual(len(problems(t)), 1)
        self.assertIn("dead-letter queue Dlq has no depth alarm", problems(t)[0])

    def test_a_queue_that_is_no_dead_letter_queue_needs_no_alarm(self):
        t = good_with_metrics()
        self.assertEqual(dead_letter_queues(t), {"Dlq"})

    def test_an_alarm_without_the_topic_fails(self):
        t = good_with_metrics()
        t["Resources"]["FnErrors"]["Properties"]["AlarmActions"] = []
        self.assertEqual(problems(t), ["alarm FnErrors has no AlarmActions entry on the SNS topic (Topic)"])

    def test_an_alarm_that_breaches_on_missing_data_fails(self):
        t = good_with_metrics()
        del t["Resources"]["DlqAlarm"]["Properties"]["TreatMissingData"]
        self.assertEqual(problems(t), ["alarm DlqAlarm does not set TreatMissingData: notBreaching"])

    def test_a_business_metric_without_an_alarm_fails(self):
        t = good_with_metrics()
        del t["Resources"]["CasesOpenedAlarm"]
        self.assertEqual(problems(t), ["metric Purse/CasesOpened has no alarm"])

    def test_an_alarm_missing_from_the_runbook_fails_but_per_function_ones_are_grouped(self):
        t = good_with_metrics()
        runbook = " ".join(f"`{m}Alarm`" for m in ALARMED_METRICS)
        self.assertEqual(problems(t, runbook), ["alarm DlqAlarm has no entry in docs/runbook.md (name it in backticks)"])

    def test_an_http_api_without_its_alarms_fails(self):
        t = good_with_metrics()
        t["Resources"]["Api"] = {"Type": "AWS::Serverless::HttpApi", "Properties": {}}
        self.assertEqual(problems(t), [
            "HTTP API Api has no AWS/ApiGateway 5xx alarm (dimensions ApiId, Stage)",
            "HTTP API Api has no AWS/ApiGateway Latency p99 alarm (dimensions ApiId, Stage)",
        ])
        for metric, stat in (("5xx", None), ("Latency", "p99")):
            alarm = {"Namespace": "AWS/ApiGateway", "MetricName": metric, "TreatMissingData": "notBreaching",
                     "AlarmActions": [{"Ref": "Topic"}],
                     "Dimensions": [{"Name": "ApiId", "Value": {"Ref": "Api"}}, {"Name": "Stage", "Value": {"Ref": "Stage"}}]}
            if stat:
                alarm["ExtendedStatistic"] = stat
            t["Resources"][metric + "Alarm"] = {"Type": ALARM, "Properties": alarm}
        self.assertEqual(problems(t), [])

    def test_a_money_path_function_without_a_duration_alarm_near_its_timeout_fails(self):
        t = good_with_metrics()
        t["Resources"]["PayoutsConsumerFunction"] = {"Type": "AWS::Lambda::Function", "Properties": {"Timeout": 30}}
        for metric in ("Errors", "Throttles"):
            t["Resources"]["P" + metric] = {"Type": ALARM, "Properties": {
                "Namespace": "AWS/Lambda", "MetricName": metric, "TreatMissingData": "notBreaching",
                "AlarmActions": [{"Ref": "Topic"}],
                "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "PayoutsConsumerFunction"}}]}}
        missing = ["money-path function PayoutsConsumerFunction has no p99 Duration alarm at 50-90 % of its 30000 ms timeout"]
        self.assertEqual(problems(t), missing)
        duration = {"Namespace": "AWS/Lambda", "MetricName": "Duration", "ExtendedStatistic": "p99", "Threshold": 29900,
                    "TreatMissingData": "notBreaching", "AlarmActions": [{"Ref": "Topic"}],
                    "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "PayoutsConsumerFunction"}}]}
        t["Resources"]["PDuration"] = {"Type": ALARM, "Properties": duration}
        self.assertEqual(problems(t), missing, "a threshold at the timeout itself fires too late")
        duration["Threshold"] = 24000
        self.assertEqual(problems(t), [])

    def test_short_tags_read_as_long_forms(self):
        doc = load("a: !Ref X\nb: !GetAtt Q.Arn\nc: !Sub 'x-${Y}'\nd: !Not [!Equals [!Ref P, '']]\n")
        self.assertEqual(doc["a"], {"Ref": "X"})
        self.assertEqual(doc["b"], {"Fn::GetAtt": ["Q", "Arn"]})
        self.assertEqual(doc["c"], {"Fn::Sub": "x-${Y}"})
        self.assertEqual(doc["d"], {"Fn::Not": [{"Fn::Equals": [{"Ref": "P"}, ""]}]})


if __name__ == "__main__":
    unittest.main()
