//! Delay queues on the real RabbitMQ: they never disappear while they may hold a message,
//! come back when deleted, take few queues for any delay, and never deliver early. Their
//! rotation period (and so their expiry) is shortened (`DelayQueues::with_rotation`) so that
//! the tests run past it.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use selinon_runtime::amqp::{Broker, DelayQueues, Outgoing, DELAY_BUCKETS_MS};
use selinon_runtime::json;
use selinon_tests::flows;
use support::{amqp_url, services, Cluster};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Waits (up to `within`) until none of `queues` exists.
async fn until_gone(conn: &Connection, queues: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut left = Vec::new();
        for q in queues {
            if exists(conn, q).await {
                left.push(q.clone());
            }
        }
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still there after {within:?}: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Settings whose rotation period will not end during a short test.
fn one_day() -> DelayQueues {
    DelayQueues::with_rotation(Duration::from_secs(86_400))
}

fn unique(name: &str) -> String {
    format!(
        "t_{name}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn delayed(queue: &str, body: &str, delay_ms: u64) -> Outgoing {
    Outgoing {
        exchange: String::new(),
        routing_key: queue.to_string(),
        body: body.to_string(),
        delay_ms,
        durable: true,
    }
}

async fn connect() -> (Connection, Channel) {
    let conn = Connection::connect(
        &amqp_url(),
        selinon_runtime::amqp::broker::connection_properties("selinon-delay-test"),
    )
    .await
    .expect("RabbitMQ on 127.0.0.1:5672");
    let channel = conn.create_channel().await.expect("a channel");
    (conn, channel)
}

/// Whether `queue` exists (a passive declaration on a channel of its own: a missing queue
/// closes the channel).
async fn exists(conn: &Connection, queue: &str) -> bool {
    let channel = conn.create_channel().await.expect("a channel");
    let found = channel
        .queue_declare(
            queue,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .is_ok();
    let _ = channel.close(200, "bye").await;
    found
}

/// Receives `n` messages from `queue` (letting the broker send on the remaining hops of
/// long delays, as a worker does), with the time each arrived.
async fn receive(
    broker: &Broker,
    channel: &Channel,
    queue: &str,
    n: usize,
    within: Duration,
) -> Vec<(String, Instant)> {
    let mut consumer = channel
        .basic_consume(
            queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while got.len() < n {
        let next = tokio::time::timeout_at(deadline, consumer.next()).await;
        let Ok(Some(Ok(delivery))) = next else {
            panic!(
                "{} of {n} messages arrived on `{queue}` within {within:?}: {got:?}",
                got.len()
            );
        };
        let rest = broker.delay_rest(queue, &delivery).await.expect("re-delay");
        if !rest {
            got.push((
                String::from_utf8_lossy(&delivery.data).into_owned(),
                Instant::now(),
            ));
        }
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    channel
        .basic_cancel(consumer.tag().as_str(), Default::default())
        .await
        .expect("cancel");
    got
}

/// Publishes `body` for `target`, due in `delay_ms`, and asserts that it arrives.
async fn round_trip(broker: &Broker, channel: &Channel, target: &str, body: &str, delay_ms: u64) {
    broker
        .publish_all(&[delayed(target, body, delay_ms)])
        .await
        .expect("publish");
    let got = receive(broker, channel, target, 1, Duration::from_secs(5)).await;
    assert_eq!(got[0].0, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_until_the_end_of_a_delay_queue_period_still_arrive() {
    if !services() {
        return;
    }
    // Delay queues rotate every second and expire 2 s + their delay after their creation.
    let delays = DelayQueues::with_rotation(Duration::from_millis(1000));
    let broker = Broker::new(amqp_url(), "delay-test").with_delay_queues(delays);
    let (conn, channel) = connect().await;
    let target = unique("expiry");

    // A message every 0.2 s for 6 s, each due 2 s later: every queue gets messages until
    // the very end of its period, and lives on only as long as its expiry.
    let mut sent = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for i in 0..30 {
        let body = format!("m{i}");
        let at = now_ms();
        let published = Instant::now();
        broker
            .publish_all(&[delayed(&target, &body, 2000)])
            .await
            .expect("publish");
        used.insert(delays.queue_name(&target, 2000, at));
        sent.push((body, published));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(used.len() >= 5, "the test spans several periods: {used:?}");
    let got = receive(
        &broker,
        &channel,
        &target,
        sent.len(),
        Duration::from_secs(10),
    )
    .await;
    let mut bodies: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
    bodies.sort_by_key(|b| b[1..].parse::<u32>().unwrap());
    let expected: Vec<&str> = sent.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(bodies, expected, "every delayed message arrives");
    for (body, at) in &got {
        let published = sent.iter().find(|(b, _)| b == body).unwrap().1;
        assert!(
            at.duration_since(published) >= Duration::from_millis(2000),
            "{body} arrived early: {:?}",
            at.duration_since(published)
        );
    }

    // Queues of past periods go away by themselves.
    let used: Vec<String> = used.into_iter().collect();
    until_gone(&conn, &used, Duration::from_secs(12)).await;

    // … and publishing goes on into a new one, with nothing lost.
    round_trip(&broker, &channel, &target, "after", 2000).await;

    broker.close().await;
    let _ = channel
        .queue_delete(&target, QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "bye").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_is_declared_again_on_the_next_publish() {
    if !services() {
        return;
    }
    // The broker declares each queue once per connection (and period).
    let broker = Broker::new(amqp_url(), "delay-test").with_delay_queues(one_day());
    let (conn, channel) = connect().await;
    let target = unique("deleted");
    let delay_queue = one_day().queue_name(&target, 200, now_ms());

    round_trip(&broker, &channel, &target, "first", 200).await;

    // Someone deletes the delay queue: the broker returns the next publish as unroutable,
    // and the publisher declares the queue again and publishes again at once.
    channel
        .queue_delete(&delay_queue, QueueDeleteOptions::default())
        .await
        .expect("delete the delay queue");
    assert!(!exists(&conn, &delay_queue).await);
    broker
        .publish_all(&[delayed(&target, "second", 200)])
        .await
        .expect("a publish into a deleted delay queue succeeds");
    assert!(exists(&conn, &delay_queue).await);
    let got = receive(&broker, &channel, &target, 1, Duration::from_secs(5)).await;
    assert_eq!(got[0].0, "second");

    // The same for a task queue.
    channel
        .queue_delete(&target, QueueDeleteOptions::default())
        .await
        .expect("delete the task queue");
    round_trip(&broker, &channel, &target, "third", 0).await;

    broker.close().await;
    let _ = channel
        .queue_delete(&target, QueueDeleteOptions::default())
        .await;
    let _ = channel
        .queue_delete(&delay_queue, QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "bye").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_and_odd_delays_take_few_queues_and_never_arrive_early() {
    if !services() {
        return;
    }
    let delays = DelayQueues {
        max_delay: Duration::from_millis(1000),
        ..one_day()
    };
    let broker = Broker::new(amqp_url(), "delay-test").with_delay_queues(delays);
    let (conn, channel) = connect().await;
    let target = unique("hops");

    // Beyond the maximum: 1000 + 1000 + 500 ms. An odd delay: 200 + 100 + 20 + 10 ms.
    let wanted = [("long", 2500u64), ("odd", 333)];
    let start = Instant::now();
    let batch: Vec<Outgoing> = wanted
        .iter()
        .map(|(body, ms)| delayed(&target, body, *ms))
        .collect();
    broker.publish_all(&batch).await.expect("publish");
    let got = receive(&broker, &channel, &target, 2, Duration::from_secs(10)).await;
    for (body, ms) in wanted {
        let at = got.iter().find(|(b, _)| b == body).expect(body).1;
        let took = at.duration_since(start);
        assert!(took >= Duration::from_millis(ms), "{body} early: {took:?}");
        assert!(
            took < Duration::from_millis(ms * 2 + 500),
            "{body} late: {took:?}"
        );
    }
    for bucket in [1000, 500, 200, 100, 20, 10] {
        let name = delays.queue_name(&target, bucket, now_ms());
        assert!(exists(&conn, &name).await, "{name}");
        assert!(DELAY_BUCKETS_MS.contains(&bucket));
        let _ = channel
            .queue_delete(&name, QueueDeleteOptions::default())
            .await;
    }
    for unused in [2500, 1500, 333, 133, 33] {
        let name = delays.queue_name(&target, unused, now_ms());
        assert!(!exists(&conn, &name).await, "{name}");
    }

    broker.close().await;
    let _ = channel
        .queue_delete(&target, QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "bye").await;
}

/// A worker kept alive well past its delay queues' (shortened) expiry keeps retrying tasks
/// through them: every flow finishes, each flaky task ran twice, and the delay queues of past
/// periods are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_keep_flowing_past_the_delay_queue_expiry() {
    if !services() {
        return;
    }
    // `Flaky` retries after 1 s; delay queues rotate every second and expire 3 s after
    // their creation.
    std::env::set_var("SELINON_TEST_DELAY_ROTATION_MS", "1000");
    let delays = DelayQueues::with_rotation(Duration::from_millis(1000));
    let cluster = Cluster::start("delayexpiry", 1).await;
    let task_queue = format!("{}_tasks", cluster.prefix);

    let started = Instant::now();
    let first = now_ms();
    let mut waves = Vec::new();
    for wave in 0..8 {
        let mut ids = Vec::new();
        for i in 0..3 {
            let ns = format!("{}-{wave}-{i}", cluster.prefix);
            let args = json!({"ns": ns});
            ids.push((ns, cluster.submit(&flows::flaky::FLOW, args).await));
        }
        waves.push(ids);
        tokio::time::sleep(Duration::from_millis(1700)).await;
    }
    for ids in &waves {
        for (ns, id) in ids {
            let out = cluster
                .client
                .wait(id, Duration::from_secs(30))
                .await
                .expect("the flow ends");
            assert!(out.is_finished(), "{out:?}");
            let runs = cluster.runs_by_task(ns).await;
            assert_eq!(runs["Flaky"], 2, "one failure, one retry: {runs:?}");
        }
    }
    let ran_for = started.elapsed();
    assert!(
        ran_for > Duration::from_secs(12),
        "the worker ran past several expiry windows: {ran_for:?}"
    );

    let (conn, _channel) = connect().await;
    let periods: Vec<String> = (first..now_ms())
        .step_by(500)
        .map(|at| delays.queue_name(&task_queue, 1000, at))
        .collect();
    until_gone(&conn, &periods, Duration::from_secs(12)).await;
    let _ = conn.close(200, "bye").await;
    cluster.stop().await;
}
