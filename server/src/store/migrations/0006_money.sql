-- Issue 14: debts and restores.
-- A settlement queued after the chain was found ahead of this store (a
-- restore from an older backup): before it is sent, the relayer looks for
-- its Settled event, so a session settled before the restore is not paid
-- twice under a new sequence.
ALTER TABLE settlements ADD COLUMN verify_onchain INTEGER NOT NULL DEFAULT 0;
-- Open settlements now include the debts (UNPAID), retried when the pool grows.
DROP INDEX settlements_open;
CREATE INDEX settlements_open ON settlements (consumer, sequence)
    WHERE state IN ('PENDING', 'SUBMITTED', 'UNPAID');
