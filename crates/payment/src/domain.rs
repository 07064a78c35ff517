//! Where an order's payment is, and what moves it: the events payment
//! handles and the refunds it makes ([`Step::moves`]):
//!
//! - unknown → `HELD` (`OrderCreated`, the claim on the token confirmed) or
//!   `FAILED` (`OrderCreated`, the token another order's);
//! - `HELD` → `HELD` (a new total), `PROCESSED` (captured), `FAILED` (the
//!   capture refused) or `CANCELLED` (packaging or delivery failed, the
//!   order cancelled);
//! - `PROCESSED`, `PARTIALLY_REFUNDED` (and `REFUNDED`, where the amount
//!   check then finds nothing left) → `PARTIALLY_REFUNDED` or `REFUNDED`
//!   (a refund, partial or reaching the capture).
//!
//! A step from any other status changes nothing: a redelivered or late
//! settlement finds the payment settled already, a refund of a payment
//! never captured is refused. The store's conditional statements take
//! their statuses from here, and hold the condition themselves so that of
//! concurrent steps only one applies.

/// Where an order's payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The token is held, the amount authorised.
    Held,
    /// Captured by the processor; the token is kept apart for refunds.
    Processed,
    /// Released; the token is forgotten.
    Cancelled,
    /// Not paid: the processor refused the capture, or the token was
    /// another order's. The token is forgotten.
    Failed,
    /// Captured, and part of it refunded.
    PartiallyRefunded,
    /// Captured, and all of it refunded.
    Refunded,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 6] = [
        Status::Held,
        Status::Processed,
        Status::Cancelled,
        Status::Failed,
        Status::PartiallyRefunded,
        Status::Refunded,
    ];

    /// Stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Held => "HELD",
            Status::Processed => "PROCESSED",
            Status::Cancelled => "CANCELLED",
            Status::Failed => "FAILED",
            Status::PartiallyRefunded => "PARTIALLY_REFUNDED",
            Status::Refunded => "REFUNDED",
        }
    }

    /// The status stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// What happens to an order's payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `OrderCreated`, and the order's claim on its token is confirmed:
    /// the token is held.
    Hold,
    /// `OrderCreated`, but another order holds the token: the payment
    /// fails from the start and nothing is held (`PaymentFailed`).
    TokenTaken,
    /// `OrderModified` with a new total: the held amount follows it.
    NewTotal,
    /// `DeliveryCompleted`, and the processor captured the final total
    /// (`PaymentProcessed`).
    Capture,
    /// `DeliveryCompleted`, but the processor refused the capture or
    /// orders does not know the order (`PaymentFailed`).
    CaptureRefused,
    /// `PackagingFailed`, `DeliveryFailed` or `OrderCancelled`: the hold
    /// is released.
    Cancel,
    /// A refund that leaves part of the capture unrefunded
    /// (`PaymentRefunded`).
    Refund,
    /// A refund that brings the sum refunded up to the capture
    /// (`PaymentRefunded`).
    RefundAll,
}

/// A payment payment does not know yet (its `OrderCreated` has not been
/// handled).
const UNKNOWN: &[Option<Status>] = &[None];
const HELD: &[Option<Status>] = &[Some(Status::Held)];
/// Refunds are allowed from each captured status (from `REFUNDED` the
/// amount check then refuses any amount: nothing is left).
const CAPTURED: &[Option<Status>] = &[
    Some(Status::Processed),
    Some(Status::PartiallyRefunded),
    Some(Status::Refunded),
];

impl Step {
    /// The statuses a payment must be in for the step (`None`: payment
    /// does not know the order yet), and the status it moves to.
    pub fn moves(self) -> (&'static [Option<Status>], Status) {
        match self {
            Step::Hold => (UNKNOWN, Status::Held),
            Step::TokenTaken => (UNKNOWN, Status::Failed),
            Step::NewTotal => (HELD, Status::Held),
            Step::Capture => (HELD, Status::Processed),
            Step::CaptureRefused => (HELD, Status::Failed),
            Step::Cancel => (HELD, Status::Cancelled),
            Step::Refund => (CAPTURED, Status::PartiallyRefunded),
            Step::RefundAll => (CAPTURED, Status::Refunded),
        }
    }

    /// The status the step moves a payment to.
    pub fn to(self) -> Status {
        self.moves().1
    }
}

/// The status `step` moves a payment in `status` (`None`: unknown yet)
/// to; `None` when the step does not apply and the payment stays as it is.
pub fn next(status: Option<Status>, step: Step) -> Option<Status> {
    let (from, to) = step.moves();
    from.contains(&status).then_some(to)
}

/// The step of refunding `amount` of a payment that captured `captured`
/// and refunded `refunded` before (all in cents).
pub fn refund(captured: i64, refunded: i64, amount: i64) -> Step {
    if refunded.saturating_add(amount) >= captured {
        Step::RefundAll
    } else {
        Step::Refund
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status a payment can be in, "unknown yet" included.
    fn every_status() -> Vec<Option<Status>> {
        std::iter::once(None).chain(Status::ALL.map(Some)).collect()
    }

    #[test]
    fn each_step_moves_only_from_its_statuses_and_changes_nothing_from_any_other() {
        use Status::*;
        let captured = [Processed, PartiallyRefunded, Refunded].map(Some);
        let table: [(Step, &[Option<Status>], Status); 8] = [
            (Step::Hold, &[None], Held),
            (Step::TokenTaken, &[None], Failed),
            (Step::NewTotal, &[Some(Held)], Held),
            (Step::Capture, &[Some(Held)], Processed),
            (Step::CaptureRefused, &[Some(Held)], Failed),
            (Step::Cancel, &[Some(Held)], Cancelled),
            (Step::Refund, &captured, PartiallyRefunded),
            (Step::RefundAll, &captured, Refunded),
        ];
        for (step, from, to) in table {
            assert_eq!(step.to(), to, "{step:?}");
            for status in every_status() {
                let expected = from.contains(&status).then_some(to);
                assert_eq!(next(status, step), expected, "{step:?} from {status:?}");
            }
        }
    }

    #[test]
    fn a_held_payment_is_settled_once_and_a_late_settlement_changes_nothing() {
        let settlements = [Step::Capture, Step::CaptureRefused, Step::Cancel];
        for first in settlements {
            let settled = next(Some(Status::Held), first);
            assert!(settled.is_some(), "{first:?}");
            for later in settlements
                .into_iter()
                .chain([Step::NewTotal, Step::Hold, Step::TokenTaken])
            {
                assert_eq!(next(settled, later), None, "{later:?} after {first:?}");
            }
        }
        // Settling a payment not known yet waits for its OrderCreated (the
        // handler fails and the bus retries).
        for step in settlements {
            assert_eq!(next(None, step), None, "{step:?}");
        }
    }

    #[test]
    fn an_order_is_held_or_failed_once_however_often_its_creation_arrives() {
        assert_eq!(next(None, Step::Hold), Some(Status::Held));
        assert_eq!(next(None, Step::TokenTaken), Some(Status::Failed));
        for status in Status::ALL {
            assert_eq!(next(Some(status), Step::Hold), None, "{status:?}");
            assert_eq!(next(Some(status), Step::TokenTaken), None, "{status:?}");
        }
    }

    #[test]
    fn refunds_are_partial_until_they_reach_the_capture() {
        // (captured, refunded before, amount, step)
        let cases = [
            (1000, 0, 1, Step::Refund),
            (1000, 0, 999, Step::Refund),
            (1000, 0, 1000, Step::RefundAll),
            (1000, 600, 300, Step::Refund),
            (1000, 600, 400, Step::RefundAll),
            // More than is left is refused before (400); were it not, it
            // would still read as all refunded.
            (1000, 600, 500, Step::RefundAll),
            (i64::MAX, i64::MAX, 1, Step::RefundAll),
        ];
        for (captured, refunded, amount, step) in cases {
            assert_eq!(
                refund(captured, refunded, amount),
                step,
                "{captured} {refunded} {amount}"
            );
        }
        let partly = next(Some(Status::Processed), Step::Refund);
        assert_eq!(partly, Some(Status::PartiallyRefunded));
        assert_eq!(next(partly, Step::Refund), Some(Status::PartiallyRefunded));
        assert_eq!(next(partly, Step::RefundAll), Some(Status::Refunded));
        for never_captured in [Status::Held, Status::Cancelled, Status::Failed] {
            for step in [Step::Refund, Step::RefundAll] {
                assert_eq!(
                    next(Some(never_captured), step),
                    None,
                    "{step:?} from {never_captured:?}"
                );
            }
        }
    }

    #[test]
    fn statuses_round_trip_through_their_text() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("held"), None);
        assert_eq!(Status::parse("AUTHORISED"), None);
    }
}
