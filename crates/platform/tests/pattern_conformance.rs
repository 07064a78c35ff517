//! Conformance tests for the EventBridge pattern matcher.
//!
//! The tables below are modelled on the examples of the Amazon EventBridge
//! user guide ("Event patterns", "Content filtering in Amazon EventBridge
//! event patterns", "Arrays in event patterns", "Matching null values and
//! empty strings") plus events of this platform. Patterns are written as JSON
//! text so cases such as duplicate keys can be expressed.

use ecom_platform::pattern::{Pattern, PatternError};
use serde_json::{json, Value};

/// The EC2 state-change event used throughout the EventBridge documentation.
fn ec2() -> Value {
    json!({
        "version": "0",
        "id": "ddddd4-aaaa-7777-4444-345dd43cc333",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "012345679012",
        "time": "2017-10-02T16:24:49Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
        "detail": {
            "c-count": 5,
            "d-count": 3,
            "x-limit": 301.8,
            "source-ip": "10.0.0.33",
            "instance-id": "i-000000aaaaaa00000",
            "state": "running"
        }
    })
}

/// The EC2 event with `detail` replaced.
fn ec2_detail(detail: Value) -> Value {
    let mut event = ec2();
    event["detail"] = detail;
    event
}

/// The Auto Scaling event of the "null values and empty strings" page.
fn autoscaling() -> Value {
    json!({
        "version": "0",
        "id": "3e3c153a-8339-4e30-8c35-687ebef853fe",
        "detail-type": "EC2 Instance Launch Successful",
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": "2015-11-11T21:31:47Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"eventVersion": "", "responseElements": null}
    })
}

/// The (truncated) Macie alert of the "Event patterns" page.
fn macie() -> Value {
    json!({
        "detail-type": "Macie Alert",
        "source": "aws.macie",
        "resources": [
            "arn:aws:macie:us-east-1:123456789012:trigger/trigger_id/alert/alert_id",
            "arn:aws:macie:us-east-1:123456789012:trigger/trigger_id"
        ],
        "detail": {
            "notification-type": "ALERT_CREATED",
            "tags": ["Custom_Alert", "Insider"],
            "risk-score": 80,
            "trigger": {"alert-type": "basic", "risk": 8}
        }
    })
}

fn cloudwatch(detail: Value) -> Value {
    let mut event = json!({"source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm"});
    if let (Value::Object(event), Value::Object(extra)) = (&mut event, detail) {
        event.extend(extra);
    }
    event
}

fn order_created() -> Value {
    json!({
        "source": "ecommerce.orders",
        "detail-type": "OrderCreated",
        "resources": ["4b3b2d1a-orders"],
        "detail": {
            "orderId": "4b3b2d1a",
            "userId": "c5e3a4f1",
            "status": "NEW",
            "total": 1200,
            "deliveryPrice": 200,
            "address": {"country": "FR", "city": "Paris"},
            "products": [
                {"productId": "p1", "name": "Shoes", "price": 500, "quantity": 2},
                {"productId": "p2", "name": "Socks", "price": 100, "quantity": 3}
            ]
        }
    })
}

fn order_modified(changed: Value) -> Value {
    json!({
        "source": "ecommerce.orders",
        "detail-type": "OrderModified",
        "detail": {
            "changed": changed,
            "old": {"status": "NEW", "total": 1200},
            "new": {"status": "NEW", "total": 1500}
        }
    })
}

fn warehouse(detail_type: &str) -> Value {
    json!({
        "source": "ecommerce.warehouse",
        "detail-type": detail_type,
        "detail": {"orderId": "4b3b2d1a", "products": []}
    })
}

/// (case, pattern as JSON text, event, expected match)
#[rustfmt::skip]
fn conformance_cases() -> Vec<(&'static str, &'static str, Value, bool)> {
    vec![
        // ---- "Event patterns" page
        ("doc termination pattern skips a running instance",
         r#"{"source":["aws.ec2"],"detail-type":["EC2 Instance State-change Notification"],"detail":{"state":["terminated"]}}"#,
         ec2(), false),
        ("doc termination pattern matches a terminated instance",
         r#"{"source":["aws.ec2"],"detail-type":["EC2 Instance State-change Notification"],"detail":{"state":["terminated"]}}"#,
         ec2_detail(json!({"instance-id": "i-1", "state": "terminated"})), true),
        ("a match list is an any-of",
         r#"{"detail":{"state":["initializing","running"]}}"#,
         ec2(), true),
        ("a list of sources matches either source",
         r#"{"source":["aws.ec2","aws.fargate"]}"#,
         ec2(), true),
        ("string matching is case sensitive",
         r#"{"source":["AWS.EC2"]}"#,
         ec2(), false),
        ("every pattern field must match",
         r#"{"source":["aws.ec2"],"region":["us-west-1"]}"#,
         ec2(), false),
        ("a pattern field missing from the event fails",
         r#"{"detail":{"owner":["me"]}}"#,
         ec2(), false),
        ("null matches a null field",
         r#"{"source":["aws.autoscaling"],"detail-type":["EC2 Instance Launch Successful"],"detail":{"responseElements":[null]}}"#,
         autoscaling(), true),
        ("an empty string matches an empty string",
         r#"{"detail":{"eventVersion":[""]}}"#,
         autoscaling(), true),
        ("null does not match an empty string",
         r#"{"detail":{"eventVersion":[null]}}"#,
         autoscaling(), false),
        ("an empty string does not match null",
         r#"{"detail":{"responseElements":[""]}}"#,
         autoscaling(), false),
        ("null does not match a missing field",
         r#"{"detail":{"requestParameters":[null]}}"#,
         autoscaling(), false),
        ("macie numbers match at several nesting levels",
         r#"{"source":["aws.macie"],"detail-type":["Macie Alert"],"detail":{"risk-score":[80],"trigger":{"risk":[8]}}}"#,
         macie(), true),
        ("a different number does not match",
         r#"{"detail":{"risk-score":[81]}}"#,
         macie(), false),
        ("numbers compare by value",
         r#"{"detail":{"risk-score":[80.0],"trigger":{"risk":[8e0]}}}"#,
         macie(), true),
        ("a numeric string does not match a number",
         r#"{"detail":{"risk-score":["80"]}}"#,
         macie(), false),
        ("a number does not match a numeric string",
         r#"{"detail":{"orderId":[4]}}"#,
         json!({"detail": {"orderId": "4"}}), false),
        ("booleans match booleans only",
         r#"{"detail":{"express":[true]}}"#,
         json!({"detail": {"express": true}}), true),
        ("true does not match false",
         r#"{"detail":{"express":[true]}}"#,
         json!({"detail": {"express": false}}), false),
        ("true does not match the string true",
         r#"{"detail":{"express":[true]}}"#,
         json!({"detail": {"express": "true"}}), false),
        // ---- "Arrays in event patterns" page
        ("an event array matches when any element matches",
         r#"{"resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f","arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f"]}"#,
         json!({"resources": ["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b:autoScalingGroupName/ASGTerminate", "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"]}), true),
        ("an event array without a common element does not match",
         r#"{"resources":["arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f"]}"#,
         ec2(), false),
        ("a tag inside an event array matches",
         r#"{"detail":{"tags":["Insider"]}}"#,
         macie(), true),
        ("nested event arrays are searched too",
         r#"{"a":["x"]}"#,
         json!({"a": [["y"], [["x"]]]}), true),
        ("an empty event array matches no value",
         r#"{"resources":["arn"]}"#,
         autoscaling(), false),
        // ---- prefix, suffix, equals-ignore-case, wildcard
        ("prefix matches the start of a string",
         r#"{"time":[{"prefix":"2017-10-02"}]}"#,
         ec2(), true),
        ("prefix does not match elsewhere",
         r#"{"time":[{"prefix":"10-02"}]}"#,
         ec2(), false),
        ("prefix only matches strings",
         r#"{"detail":{"c-count":[{"prefix":"5"}]}}"#,
         ec2(), false),
        ("prefix with equals-ignore-case ignores case",
         r#"{"detail":{"service":[{"prefix":{"equals-ignore-case":"EventB"}}]}}"#,
         json!({"detail": {"service": "eventbridge"}}), true),
        ("suffix matches the end of a string",
         r#"{"source":[{"suffix":"ec2"}]}"#,
         ec2(), true),
        ("suffix is case sensitive",
         r#"{"FileName":[{"suffix":".png"}]}"#,
         json!({"FileName": "photo.PNG"}), false),
        ("suffix with equals-ignore-case ignores case",
         r#"{"detail":{"FileName":[{"suffix":{"equals-ignore-case":".png"}}]}}"#,
         json!({"detail": {"FileName": "photo.PNG"}}), true),
        ("equals-ignore-case matches another casing",
         r#"{"source":[{"equals-ignore-case":"AWS.EC2"}]}"#,
         ec2(), true),
        ("equals-ignore-case still needs equal text",
         r#"{"source":[{"equals-ignore-case":"aws.ec"}]}"#,
         ec2(), false),
        ("wildcard matches an event bus arn",
         r#"{"EventBusArn":[{"wildcard":"arn:aws:events:us-east-1:*:event-bus/*"}]}"#,
         json!({"EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/myEventBus"}), true),
        ("wildcard stars must still find the literal parts",
         r#"{"EventBusArn":[{"wildcard":"arn:aws:events:us-west-2:*:event-bus/*"}]}"#,
         json!({"EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/myEventBus"}), false),
        ("wildcard applies to event array elements",
         r#"{"resources":[{"wildcard":"arn:aws:ec2:*:instance/i-0*"}]}"#,
         ec2(), true),
        ("wildcard without a star is an exact match",
         r#"{"source":[{"wildcard":"aws.ec"}]}"#,
         ec2(), false),
        ("wildcard stars match runs of text in order",
         r#"{"s":[{"wildcard":"a*b*c"}]}"#,
         json!({"s": "axxbyybzc"}), true),
        ("wildcard literal parts must appear in order",
         r#"{"s":[{"wildcard":"a*b*c"}]}"#,
         json!({"s": "acb"}), false),
        ("wildcard literal parts may not overlap",
         r#"{"s":[{"wildcard":"ab*ba"}]}"#,
         json!({"s": "aba"}), false),
        ("an escaped star in a wildcard is a literal star",
         r#"{"s":[{"wildcard":"a\\*b"}]}"#,
         json!({"s": "a*b"}), true),
        ("an escaped star does not match other text",
         r#"{"s":[{"wildcard":"a\\*b"}]}"#,
         json!({"s": "axb"}), false),
        ("an escaped backslash leaves the following star a wildcard",
         r#"{"s":[{"wildcard":"a\\\\*"}]}"#,
         json!({"s": "a\\tail"}), true),
        ("ignoring case handles letters that lower-case to two characters",
         r#"{"f":[{"suffix":{"equals-ignore-case":".İ"}}]}"#,
         json!({"f": "FILE.i\u{307}"}), true),
        ("equals-ignore-case compares lower-cased text",
         r#"{"f":[{"equals-ignore-case":"file.i\u0307"}]}"#,
         json!({"f": "File.İ"}), true),
        // ---- anything-but
        ("anything-but a string matches another string",
         r#"{"detail":{"state":[{"anything-but":"initializing"}]}}"#,
         ec2(), true),
        ("anything-but a string rejects that string",
         r#"{"detail":{"state":[{"anything-but":"running"}]}}"#,
         ec2(), false),
        ("anything-but a number matches another number",
         r#"{"detail":{"x-limit":[{"anything-but":123}]}}"#,
         ec2(), true),
        ("anything-but a list of strings matches outside the list",
         r#"{"detail":{"state":[{"anything-but":["stopped","overloaded"]}]}}"#,
         ec2(), true),
        ("anything-but a list of strings rejects list members",
         r#"{"detail":{"state":[{"anything-but":["stopped","running"]}]}}"#,
         ec2(), false),
        ("anything-but a list of numbers matches outside the list",
         r#"{"detail":{"x-limit":[{"anything-but":[100,200,300]}]}}"#,
         ec2(), true),
        ("anything-but a list of numbers rejects list members",
         r#"{"detail":{"x-limit":[{"anything-but":[100,301.8]}]}}"#,
         ec2(), false),
        ("anything-but prefix matches other prefixes",
         r#"{"detail":{"state":[{"anything-but":{"prefix":"init"}}]}}"#,
         ec2(), true),
        ("anything-but prefix rejects that prefix",
         r#"{"detail":{"state":[{"anything-but":{"prefix":"run"}}]}}"#,
         ec2(), false),
        ("anything-but suffix rejects that suffix",
         r#"{"FileName":[{"anything-but":{"suffix":".png"}}]}"#,
         json!({"FileName": "photo.png"}), false),
        ("anything-but suffix matches other suffixes",
         r#"{"FileName":[{"anything-but":{"suffix":".png"}}]}"#,
         json!({"FileName": "notes.txt"}), true),
        ("anything-but equals-ignore-case rejects any casing",
         r#"{"detail":{"state":[{"anything-but":{"equals-ignore-case":"RUNNING"}}]}}"#,
         ec2(), false),
        ("anything-but equals-ignore-case list matches outside the list",
         r#"{"detail":{"state":[{"anything-but":{"equals-ignore-case":["Stopped","OVERLOADED"]}}]}}"#,
         ec2(), true),
        ("anything-but wildcard rejects matching paths",
         r#"{"FilePath":[{"anything-but":{"wildcard":"*/lib/*"}}]}"#,
         json!({"FilePath": "/usr/lib/libc.so"}), false),
        ("anything-but wildcard matches other paths",
         r#"{"FilePath":[{"anything-but":{"wildcard":"*/lib/*"}}]}"#,
         json!({"FilePath": "/usr/bin/ls"}), true),
        ("anything-but does not match a missing field",
         r#"{"detail":{"owner":[{"anything-but":"me"}]}}"#,
         ec2(), false),
        ("anything-but does not match an object",
         r#"{"detail":[{"anything-but":"x"}]}"#,
         ec2(), false),
        // ---- numeric
        ("numeric range includes its inclusive upper bound",
         r#"{"detail":{"c-count":[{"numeric":[">",0,"<=",5]}]}}"#,
         ec2(), true),
        ("numeric range excludes its exclusive bound",
         r#"{"detail":{"c-count":[{"numeric":[">",5]}]}}"#,
         ec2(), false),
        ("numeric at-least includes the bound",
         r#"{"detail":{"c-count":[{"numeric":[">=",5]}]}}"#,
         ec2(), true),
        ("numeric less-than matches a smaller number",
         r#"{"detail":{"d-count":[{"numeric":["<",10]}]}}"#,
         ec2(), true),
        ("numeric equals accepts exponent notation",
         r#"{"detail":{"x-limit":[{"numeric":["=",3.018e2]}]}}"#,
         ec2(), true),
        ("the documented numeric example needs all three fields",
         r#"{"detail":{"c-count":[{"numeric":[">",0,"<=",5]}],"d-count":[{"numeric":["<",10]}],"x-limit":[{"numeric":["=",3.018e2]}]}}"#,
         ec2(), true),
        ("one failing numeric field fails the documented example",
         r#"{"detail":{"c-count":[{"numeric":[">",0,"<=",5]}],"d-count":[{"numeric":["<",10]}],"x-limit":[{"numeric":["=",3.018e2]}]}}"#,
         ec2_detail(json!({"c-count": 5, "d-count": 10, "x-limit": 301.8})), false),
        ("numeric does not match a numeric string",
         r#"{"detail":{"c-count":[{"numeric":[">",0]}]}}"#,
         ec2_detail(json!({"c-count": "5"})), false),
        ("numeric lower bounds may come second",
         r#"{"detail":{"price":[{"numeric":["<=",20,">",10]}]}}"#,
         json!({"detail": {"price": 20}}), true),
        // ---- cidr
        ("cidr matches an address inside the network",
         r#"{"detail":{"source-ip":[{"cidr":"10.0.0.0/24"}]}}"#,
         ec2(), true),
        ("cidr does not match an address outside the network",
         r#"{"detail":{"source-ip":[{"cidr":"10.0.1.0/24"}]}}"#,
         ec2(), false),
        ("cidr supports ipv6",
         r#"{"detail":{"sourceIPAddress":[{"cidr":"2001:db8::/32"}]}}"#,
         json!({"detail": {"sourceIPAddress": "2001:db8:0:1::17"}}), true),
        ("cidr does not match text that is not an address",
         r#"{"detail":{"state":[{"cidr":"0.0.0.0/0"}]}}"#,
         ec2(), false),
        // ---- exists
        ("exists true matches a present leaf",
         r#"{"detail":{"state":[{"exists":true}]}}"#,
         ec2(), true),
        ("exists true does not match an object",
         r#"{"detail":{"c-count":[{"exists":true}]}}"#,
         json!({"detail-type": ["EC2 Instance State-change Notification"], "detail": {"c-count": {"c1": 100}}}), false),
        ("exists false matches an object because only leaves exist",
         r#"{"detail":{"c-count":[{"exists":false}]}}"#,
         json!({"detail": {"state": ["initializing", "running"], "c-count": {"c1": 100}}}), true),
        ("exists false matches a missing field",
         r#"{"detail":{"owner":[{"exists":false}]}}"#,
         ec2(), true),
        ("exists false rejects a present leaf",
         r#"{"detail":{"state":[{"exists":false}]}}"#,
         ec2(), false),
        ("exists false matches below a missing parent",
         r#"{"detail":{"trigger":{"risk":[{"exists":false}]}}}"#,
         ec2(), true),
        ("exists true matches a null field",
         r#"{"detail":{"responseElements":[{"exists":true}]}}"#,
         autoscaling(), true),
        ("exists true does not match an empty array",
         r#"{"resources":[{"exists":true}]}"#,
         autoscaling(), false),
        // ---- combinations
        ("the documented complex example matches",
         r#"{"time":[{"prefix":"2017-10-02"}],"detail":{"state":[{"anything-but":"initializing"}],"c-count":[{"numeric":[">",0,"<=",5]}],"d-count":[{"numeric":["<",10]}],"x-limit":[{"anything-but":[100,200,300]}],"source-ip":[{"cidr":"10.0.0.0/8"}]}}"#,
         ec2(), true),
        ("a duplicate key keeps its last value",
         r#"{"detail":{"state":[{"prefix":"run"}],"state":[{"anything-but":"running"}]}}"#,
         ec2(), false),
        ("a match list may mix literals and operators",
         r#"{"detail":{"state":["stopped",{"prefix":"run"}]}}"#,
         ec2(), true),
        // ---- $or
        ("documented $or matches when one branch matches",
         r#"{"detail":{"$or":[{"c-count":[{"numeric":[">",0,"<=",5]}]},{"d-count":[{"numeric":["<",10]}]},{"x-limit":[{"numeric":["=",3.018e2]}]}]}}"#,
         ec2_detail(json!({"c-count": 50, "d-count": 3, "x-limit": 1})), true),
        ("documented $or fails when no branch matches",
         r#"{"detail":{"$or":[{"c-count":[{"numeric":[">",0,"<=",5]}]},{"d-count":[{"numeric":["<",10]}]},{"x-limit":[{"numeric":["=",3.018e2]}]}]}}"#,
         ec2_detail(json!({"c-count": 50, "d-count": 30, "x-limit": 1})), false),
        ("$or branches are combined with their sibling fields",
         r#"{"source":["aws.cloudwatch"],"$or":[{"metricName":["CPUUtilization","ReadLatency"]},{"namespace":["AWS/EC2","AWS/ES"]}]}"#,
         cloudwatch(json!({"namespace": "AWS/EC2"})), true),
        ("a failing sibling field fails the $or pattern",
         r#"{"source":["aws.ec2"],"$or":[{"metricName":["CPUUtilization","ReadLatency"]},{"namespace":["AWS/EC2","AWS/ES"]}]}"#,
         cloudwatch(json!({"namespace": "AWS/EC2"})), false),
        ("$or fails when no branch matches the siblings' event",
         r#"{"source":["aws.cloudwatch"],"$or":[{"metricName":["CPUUtilization","ReadLatency"]},{"namespace":["AWS/EC2","AWS/ES"]}]}"#,
         cloudwatch(json!({"metricName": "DiskWrites", "namespace": "AWS/RDS"})), false),
        ("an $or branch with several fields needs all of them",
         r#"{"source":["aws.cloudwatch"],"$or":[{"metricName":["CPUUtilization"]},{"metricType":["MetricType"],"namespace":["AWS/EC2"]},{"scope":["Service"]}]}"#,
         cloudwatch(json!({"metricType": "MetricType", "namespace": "AWS/ES"})), false),
        ("nested $or inside an $or branch matches",
         r#"{"source":["aws.cloudwatch"],"$or":[{"metricName":["CPUUtilization"]},{"metricType":["MetricType"],"namespace":["AWS/EC2"],"$or":[{"metricId":[1234]},{"spaceId":[1000]}]}]}"#,
         cloudwatch(json!({"metricType": "MetricType", "namespace": "AWS/EC2", "spaceId": 1000}),), true),
        ("parallel $or at two levels both need a match",
         r#"{"$or":[{"metricName":["CPUUtilization"]},{"namespace":["AWS/EC2"]}],"detail":{"$or":[{"source":["aws.cloudwatch"]},{"detail-type":["CloudWatch Alarm State Change"]}]}}"#,
         cloudwatch(json!({"namespace": "AWS/EC2", "detail": {"source": "aws.ec2"}})), false),
        ("$or branches may use exists false",
         r#"{"$or":[{"detail":{"owner":[{"exists":false}]}},{"detail":{"owner":["me"]}}]}"#,
         ec2(), true),
        // ---- this platform's events
        ("order modified matches when the total is among the changes",
         r#"{"source":["ecommerce.orders"],"detail-type":["OrderModified"],"detail":{"changed":["total"]}}"#,
         order_modified(json!(["products", "total"])), true),
        ("order modified skips changes that do not touch the total",
         r#"{"source":["ecommerce.orders"],"detail-type":["OrderModified"],"detail":{"changed":["total"]}}"#,
         order_modified(json!(["status"])), false),
        ("order modified rules can look at old and new values",
         r#"{"detail-type":["OrderModified"],"detail":{"old":{"total":[{"numeric":["<",1500]}]},"new":{"total":[{"numeric":[">=",1500]}]}}}"#,
         order_modified(json!(["total"])), true),
        ("an order created rule skips modified orders",
         r#"{"source":["ecommerce.orders"],"detail-type":["OrderCreated"]}"#,
         order_modified(json!(["total"])), false),
        ("a source list routes warehouse and order events",
         r#"{"source":["ecommerce.orders","ecommerce.warehouse"],"detail-type":["OrderCreated","PackageCreated"]}"#,
         warehouse("PackageCreated"), true),
        ("a warehouse failure does not match package created",
         r#"{"source":["ecommerce.warehouse"],"detail-type":["PackageCreated"]}"#,
         warehouse("PackagingFailed"), false),
        ("a field of objects in an array matches any element",
         r#"{"detail":{"products":{"productId":["p2"]}}}"#,
         order_created(), true),
        ("fields of one array element are not combined with another",
         r#"{"detail":{"products":{"productId":["p1"],"quantity":[3]}}}"#,
         order_created(), false),
        ("fields of the same array element match together",
         r#"{"detail":{"products":{"productId":["p2"],"quantity":[{"numeric":[">=",3]}]}}}"#,
         order_created(), true),
        ("nested address fields match",
         r#"{"detail":{"address":{"country":["FR","BE"]}}}"#,
         order_created(), true),
        ("orders above a total threshold match",
         r#"{"source":["ecommerce.orders"],"detail":{"total":[{"numeric":[">",1000]}],"status":[{"anything-but":["CANCELLED","COMPLETED"]}]}}"#,
         order_created(), true),
        ("a payment token that is absent can be required absent",
         r#"{"detail":{"paymentToken":[{"exists":false}],"orderId":[{"prefix":"4b3"}]}}"#,
         order_created(), true),
        ("a leaf list does not match an object field",
         r#"{"detail":["x"]}"#,
         order_created(), false),
        ("an object pattern does not match a string field",
         r#"{"source":{"name":["ecommerce.orders"]}}"#,
         order_created(), false),
        ("a pattern does not match an event that is not an object",
         r#"{"source":["ecommerce.orders"]}"#,
         json!(["ecommerce.orders"]), false),
    ]
}

#[test]
fn every_conformance_case_gives_the_documented_result() {
    let mut failures = Vec::new();
    for (name, pattern, event, expected) in conformance_cases() {
        match Pattern::from_json_str(pattern) {
            Ok(compiled) if compiled.matches(&event) == expected => {}
            Ok(_) => failures.push(format!("{name}: expected matches == {expected}")),
            Err(e) => failures.push(format!("{name}: pattern rejected: {e}")),
        }
    }
    assert!(failures.is_empty(), "failing cases:\n{}", failures.join("\n"));
}

#[test]
fn the_conformance_table_has_at_least_sixty_distinct_cases() {
    let cases = conformance_cases();
    let mut names: Vec<_> = cases.iter().map(|case| case.0).collect();
    names.sort_unstable();
    names.dedup();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    assert_eq!(names.len(), cases.len(), "case names must be unique");
}

/// (case, pattern as JSON text, text the error message must contain)
#[rustfmt::skip]
fn invalid_cases() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("a string leaf", r#"{"source":"aws.ec2"}"#, "pattern.source: leaf values must be arrays"),
        ("a nested number leaf", r#"{"detail":{"state":5}}"#, "pattern.detail.state: leaf values must be arrays"),
        ("a null leaf", r#"{"detail":{"state":null}}"#, "pattern.detail.state: leaf values must be arrays"),
        ("an unknown operator", r#"{"source":[{"contains":"ec2"}]}"#,
         "pattern.source: unknown operator \"contains\""),
        ("an unknown numeric operator", r#"{"detail":{"price":[{"numeric":["!=",5]}]}}"#,
         "pattern.detail.price: numeric has unknown operator \"!=\""),
        ("numeric without an array", r#"{"detail":{"price":[{"numeric":5}]}}"#,
         "pattern.detail.price: numeric needs an array of operator/number pairs"),
        ("numeric with a dangling operator", r#"{"detail":{"price":[{"numeric":[">",0,"<"]}]}}"#,
         "numeric needs an array of operator/number pairs"),
        ("numeric with a quoted number", r#"{"detail":{"price":[{"numeric":[">","0"]}]}}"#,
         "numeric needs an array of operator/number pairs"),
        ("numeric with two lower bounds", r#"{"detail":{"price":[{"numeric":[">",0,">=",5]}]}}"#,
         "one lower and one upper bound"),
        ("numeric equality inside a range", r#"{"detail":{"price":[{"numeric":["=",0,"<",5]}]}}"#,
         "cannot be part of a range"),
        ("an empty pattern", "{}", "pattern: pattern object must not be empty"),
        ("an empty nested object", r#"{"detail":{}}"#, "pattern.detail: pattern object must not be empty"),
        ("truncated JSON", r#"{"source":["#, "pattern: invalid JSON"),
        ("trailing garbage", r#"{"source":["a"]} x"#, "pattern: invalid JSON"),
        ("a top-level array", r#"["aws.ec2"]"#, "pattern: must be a JSON object"),
        ("a top-level null", "null", "pattern: must be a JSON object"),
        ("an empty match list", r#"{"source":[]}"#, "pattern.source: match list must not be empty"),
        ("a nested array in a match list", r#"{"source":[["a"]]}"#, "nested arrays"),
        ("an operator object with two keys", r#"{"source":[{"prefix":"a","suffix":"b"}]}"#, "exactly one key"),
        ("an empty operator object", r#"{"source":[{}]}"#, "exactly one key"),
        ("a numeric prefix", r#"{"source":[{"prefix":5}]}"#, "prefix needs a string"),
        ("prefix with an unknown modifier", r#"{"source":[{"prefix":{"ignore-case":"a"}}]}"#,
         "prefix needs a string"),
        ("equals-ignore-case with a number", r#"{"source":[{"equals-ignore-case":5}]}"#,
         "equals-ignore-case needs a string"),
        ("exists with a string", r#"{"source":[{"exists":"yes"}]}"#, "exists needs true or false"),
        ("anything-but with a mixed list", r#"{"source":[{"anything-but":["a",1]}]}"#, "anything-but needs"),
        ("anything-but with an empty list", r#"{"source":[{"anything-but":[]}]}"#, "anything-but needs"),
        ("anything-but with a boolean", r#"{"source":[{"anything-but":true}]}"#, "anything-but needs"),
        ("anything-but with an unknown operator", r#"{"source":[{"anything-but":{"contains":"x"}}]}"#,
         "unknown anything-but operator \"contains\""),
        ("anything-but with a prefix list", r#"{"source":[{"anything-but":{"prefix":["a","b"]}}]}"#,
         "anything-but prefix needs a string"),
        ("a wildcard with consecutive stars", r#"{"source":[{"wildcard":"a**b"}]}"#, "consecutive '*'"),
        ("a wildcard with a bad escape", r#"{"source":[{"wildcard":"a\\b"}]}"#, "may only escape"),
        ("a cidr without a prefix length", r#"{"ip":[{"cidr":"10.0.0.0"}]}"#, "pattern.ip: cidr needs an IP network"),
        ("a cidr prefix that is too long", r#"{"ip":[{"cidr":"10.0.0.0/33"}]}"#, "cidr needs an IP network"),
        ("a cidr that is not an address", r#"{"ip":[{"cidr":"intranet/8"}]}"#, "cidr needs an IP network"),
        ("$or with an object", r#"{"$or":{"source":["a"]}}"#, "pattern.$or: $or needs an array"),
        ("$or with a single branch", r#"{"$or":[{"source":["a"]}]}"#, "at least two pattern objects"),
        ("$or with a non-object branch", r#"{"$or":[{"source":["a"]},["b"]]}"#,
         "pattern.$or[1]: must be a JSON object"),
        ("$or with an empty branch", r#"{"$or":[{"source":["a"]},{}]}"#,
         "pattern.$or[1]: pattern object must not be empty"),
        ("an error deep inside $or", r#"{"detail":{"$or":[{"a":["x"]},{"b":{"c":"y"}}]}}"#,
         "pattern.detail.$or[1].b.c: leaf values must be arrays"),
    ]
}

#[test]
fn invalid_patterns_are_rejected_with_what_and_where() {
    let mut failures = Vec::new();
    for (name, pattern, expected) in invalid_cases() {
        match Pattern::from_json_str(pattern) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) if e.to_string().contains(expected) => {}
            Err(e) => failures.push(format!("{name}: message {:?} lacks {expected:?}", e.to_string())),
        }
    }
    assert!(failures.is_empty(), "failing cases:\n{}", failures.join("\n"));
}

#[test]
fn the_error_message_names_the_field_path_exactly() {
    let err = Pattern::parse(&json!({"detail": {"price": [{"numeric": 5}]}})).err();
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.starts_with("pattern.detail.price: numeric needs an array of operator/number pairs"),
        "{message}"
    );
}

#[test]
fn pattern_errors_are_standard_errors() {
    let boxed: Box<dyn std::error::Error> = match Pattern::from_json_str("{}") {
        Ok(_) => panic!("the empty pattern was accepted"),
        Err(e) => Box::new(e),
    };
    assert_eq!(boxed.to_string(), "pattern: pattern object must not be empty");
}

#[test]
fn from_str_parse_and_from_json_str_compile_the_same_pattern() -> Result<(), PatternError> {
    let text = r#"{"source":["ecommerce.orders"],"detail":{"total":[{"numeric":[">",0]}]}}"#;
    let from_str: Pattern = text.parse()?;
    let parsed = Pattern::parse(
        &json!({"source": ["ecommerce.orders"], "detail": {"total": [{"numeric": [">", 0]}]}}),
    )?;
    assert_eq!(from_str, parsed);
    assert_eq!(from_str, Pattern::from_json_str(text)?);
    Ok(())
}

#[test]
fn a_compiled_pattern_can_be_reused_for_many_events() -> Result<(), PatternError> {
    let pattern = Pattern::from_json_str(r#"{"detail":{"changed":["total"]}}"#)?;
    let hits = (0..1000)
        .map(|i| {
            order_modified(if i % 2 == 0 {
                json!(["total"])
            } else {
                json!(["status"])
            })
        })
        .filter(|event| pattern.matches(event))
        .count();
    assert_eq!(hits, 500);
    Ok(())
}

#[test]
fn odd_events_never_panic_and_only_match_absence() -> Result<(), PatternError> {
    let present =
        Pattern::from_json_str(r#"{"a":{"b":[{"numeric":[">",0]}, "x", null, {"wildcard":"*"}]}}"#)?;
    let absent = Pattern::from_json_str(r#"{"a":{"b":[{"exists":false}]}}"#)?;
    let events = [
        json!(null),
        json!(42),
        json!("a"),
        json!([]),
        json!([[{"a": {}}]]),
        json!({"a": null}),
        json!({"a": [1, [2, [3]]]}),
        json!({"a": {"b": {}}}),
        json!({"a": {"b": [[], {}]}}),
        json!({"a": [{"c": 1}, "b"]}),
    ];
    for event in &events {
        assert!(!present.matches(event), "{event}");
        assert!(absent.matches(event), "{event}");
    }
    Ok(())
}

#[test]
fn very_large_and_very_small_numbers_compare_sensibly() -> Result<(), PatternError> {
    let pattern = Pattern::from_json_str(r#"{"n":[{"numeric":[">",-1e9,"<",1e9]}]}"#)?;
    assert!(pattern.matches(&json!({"n": -999_999_999})));
    assert!(pattern.matches(&json!({"n": 0.000001})));
    assert!(!pattern.matches(&json!({"n": u64::MAX})));
    assert!(!pattern.matches(&json!({"n": i64::MIN})));
    Ok(())
}

#[test]
fn a_pattern_nested_too_deeply_is_rejected_not_overflowed() {
    let mut pattern = json!({"leaf": ["x"]});
    for _ in 0..200 {
        pattern = json!({ "level": pattern });
    }
    let message = Pattern::parse(&pattern)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("nested too deeply"), "{message}");
}

#[test]
fn deeply_nested_event_arrays_do_not_match_rather_than_overflow() -> Result<(), PatternError> {
    let mut deep = json!("x");
    for _ in 0..100_000 {
        deep = Value::Array(vec![deep]);
    }
    // Built by hand: `json!` would copy `deep` recursively.
    let mut event = Value::Object(serde_json::Map::from_iter([("a".to_owned(), deep)]));
    let pattern = Pattern::from_json_str(r#"{"a":["x"],"b":{"c":[{"exists":false}]}}"#)?;
    assert!(!pattern.matches(&event));
    // serde_json drops values recursively, so unwind this one by hand.
    let mut value = event["a"].take();
    while let Value::Array(mut items) = value {
        value = items.pop().unwrap_or(Value::Null);
    }
    Ok(())
}
