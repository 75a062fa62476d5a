// Package inbox is the durable per-user inbox of the offline service: chat
// messages stored once, and for every recipient an inbox entry with that
// recipient's own seq (contiguous, strictly increasing, starting at 1), kept
// until the recipient acknowledges it.
//
// Stores are batched: StoreBatch writes any number of messages in one
// transaction with a fixed number of multi-row statements, which is what
// lets one writer keep up with many senders. Every SQL statement is in
// sql.go.
package inbox

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/sqldb"
)

// cidRaceRetries is how often a batch is retried after another transaction
// stored one of its (from, cid) pairs first.
const cidRaceRetries = 3

// errCIDRace marks a batch that lost a race for a (from, cid) pair.
var errCIDRace = errors.New("cid stored concurrently")

// Store is the inbox store on a database.
type Store struct {
	db  *sqldb.DB
	log *slog.Logger
	// pruneBatch is the most rows one prune transaction deletes.
	pruneBatch int
}

// defaultPruneBatch keeps each prune transaction short: a prune never holds
// locks that stall stores for long, however much there is to delete.
const defaultPruneBatch = 5000

// New returns a Store on db. Call Migrate before using it.
func New(db *sqldb.DB, log *slog.Logger) *Store {
	return &Store{db: db, log: log, pruneBatch: defaultPruneBatch}
}

// Migrate creates or upgrades the inbox tables.
func (s *Store) Migrate(ctx context.Context) error {
	return s.db.Migrate(ctx, "offline", migrations())
}

// Pending is a message to store.
type Pending struct {
	From int64
	// To lists the recipients without duplicates; each gets an entry.
	To []int64
	// CID is the sender's client message id; "" means none.
	CID string
	// Body is the JSON object recipients receive, stored as is.
	Body []byte
}

// Result is what storing one Pending did.
type Result struct {
	MID string
	// Duplicate is true when an earlier message (stored before, or earlier
	// in the same batch) had the same From and CID; nothing was stored.
	Duplicate bool
	// Seqs[i] is the seq of the new entry in inbox To[i]; nil for a
	// duplicate.
	Seqs []int64
	// Err is set when the batch fell back to one transaction per message
	// and this message failed; the other fields are then empty.
	Err error
}

// StoreBatch stores ps in one transaction and returns one Result per
// Pending, in order. Seqs are assigned in the order of ps.
//
// When the batch loses a race for a (from, cid) with another writer it is
// retried (and then answers that message as a duplicate). When it fails for
// any other reason each message is stored in a transaction of its own, so
// one bad message cannot fail the others; their failures are in Result.Err.
// The error is non-nil only when nothing was stored.
func (s *Store) StoreBatch(ctx context.Context, ps []Pending) ([]Result, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	res, err := s.storeRetrying(ctx, ps)
	if err == nil {
		return res, nil
	}
	if len(ps) == 1 || ctx.Err() != nil {
		return nil, err
	}
	s.log.Warn("store batch failed, storing its messages one by one", "messages", len(ps), "err", err)
	res = make([]Result, len(ps))
	for i := range ps {
		one, err := s.storeRetrying(ctx, ps[i:i+1])
		if err != nil {
			res[i].Err = err
			continue
		}
		res[i] = one[0]
	}
	return res, nil
}

func (s *Store) storeRetrying(ctx context.Context, ps []Pending) ([]Result, error) {
	var err error
	for range cidRaceRetries {
		var res []Result
		res, err = s.storeTx(ctx, ps)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, errCIDRace) {
			break
		}
	}
	return nil, fmt.Errorf("store %d messages: %w", len(ps), err)
}

// storeTx is one attempt at storing ps in one transaction.
func (s *Store) storeTx(ctx context.Context, ps []Pending) ([]Result, error) {
	now := time.Now().UnixMilli()
	var res []Result
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		res = make([]Result, len(ps)) // InTx may run this more than once
		// (a) Messages whose (from, cid) is already stored.
		var keys []cidKey
		for _, p := range ps {
			if p.CID != "" {
				keys = append(keys, cidKey{p.From, p.CID})
			}
		}
		existing, err := s.lookupCIDs(ctx, tx, keys)
		if err != nil {
			return err
		}
		first := make(map[cidKey]int, len(keys))
		msgs := make([]messageRow, 0, len(ps))
		var fresh []int // indexes of ps stored now
		for i, p := range ps {
			if p.CID != "" {
				k := cidKey{p.From, p.CID}
				if mid, ok := existing[k]; ok {
					res[i] = Result{MID: mid, Duplicate: true}
					continue
				}
				if j, ok := first[k]; ok {
					res[i] = Result{MID: res[j].MID, Duplicate: true}
					continue
				}
				first[k] = i
			}
			id, err := uuid.NewV7()
			if err != nil {
				return fmt.Errorf("new mid: %w", err)
			}
			res[i].MID = id.String()
			msgs = append(msgs, messageRow{mid: res[i].MID, from: p.From, cid: p.CID, body: p.Body})
			fresh = append(fresh, i)
		}
		if len(fresh) == 0 {
			return nil
		}
		// (b) The messages.
		if err := s.insertMessages(ctx, tx, msgs, now); err != nil {
			if sqldb.IsDuplicate(err) {
				return fmt.Errorf("%w: %w", errCIDRace, err)
			}
			return err
		}
		// (c, d) Lock the recipients' inbox states in ascending order.
		var users []int64
		for _, i := range fresh {
			users = append(users, ps[i].To...)
		}
		slices.Sort(users)
		users = slices.Compact(users)
		last, err := s.lockStates(ctx, tx, users)
		if err != nil {
			return err
		}
		// (e) Seqs in request order.
		var entries []inboxRow
		for _, i := range fresh {
			seqs := make([]int64, len(ps[i].To))
			for j, u := range ps[i].To {
				last[u]++
				seqs[j] = last[u]
				entries = append(entries, inboxRow{user: u, seq: seqs[j], mid: res[i].MID})
			}
			res[i].Seqs = seqs
		}
		// (f) The entries.
		if err := s.insertInbox(ctx, tx, entries, now); err != nil {
			return err
		}
		// (g) The new last seqs.
		pairs := make([]seqPair, len(users))
		for i, u := range users {
			pairs[i] = seqPair{user: u, seq: last[u]}
		}
		return s.updateLastSeqs(ctx, tx, pairs)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Fetch returns user's inbox entries after seq after (after < 0: after the
// acknowledged seq) in seq order: at most limit entries, and no more once
// their bodies pass maxBytes (the first entry is always returned). It also
// returns the acknowledged and last seq; entries are never past that last.
func (s *Store) Fetch(ctx context.Context, user, after int64, limit, maxBytes int) (*api.FetchResponse, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("fetch inbox %d: limit %d is not positive", user, limit)
	}
	acked, last, err := s.selectState(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("fetch inbox %d: %w", user, err)
	}
	if after < 0 {
		after = acked
	}
	msgs, err := s.selectEntries(ctx, user, after, last, limit, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("fetch inbox %d: %w", user, err)
	}
	return &api.FetchResponse{Messages: msgs, Acked: acked, Last: last}, nil
}

// Ack acknowledges inboxes cumulatively, in one transaction: each inbox's
// acknowledged seq becomes min(seq, last seq) unless it is already higher.
// Several acks for one user count as the highest of them; acks for inboxes
// that do not exist change nothing.
func (s *Store) Ack(ctx context.Context, acks []api.Ack) error {
	if len(acks) == 0 {
		return nil
	}
	high := make(map[int64]int64, len(acks))
	for _, a := range acks {
		if seq, ok := high[a.UserID]; !ok || a.Seq > seq {
			high[a.UserID] = a.Seq
		}
	}
	sorted := make([]api.Ack, 0, len(high))
	for u, seq := range high {
		sorted = append(sorted, api.Ack{UserID: u, Seq: seq})
	}
	// Ascending user order, the same lock order as StoreBatch.
	slices.SortFunc(sorted, func(a, b api.Ack) int { return cmp.Compare(a.UserID, b.UserID) })
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		return s.updateAcks(ctx, tx, sorted)
	})
	if err != nil {
		return fmt.Errorf("ack %d inboxes: %w", len(sorted), err)
	}
	return nil
}

// Prune deletes inbox entries created before cutoff that their user has
// acknowledged, then messages created before cutoff that no entry refers
// to any more. Unacknowledged entries are never deleted, whatever their age.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (entries, messages int64, err error) {
	c := cutoff.UnixMilli()
	for _, step := range []struct {
		total *int64
		del   func(context.Context, *sql.Tx, int64, int) (int64, error)
	}{{&entries, s.deleteAcked}, {&messages, s.deleteOrphans}} {
		// Batches of pruneBatch rows, each its own short transaction.
		for {
			var n int64
			err := s.db.InTx(ctx, func(tx *sql.Tx) error {
				var err error
				n, err = step.del(ctx, tx, c, s.pruneBatch)
				return err
			})
			if err != nil {
				return entries, messages, fmt.Errorf("prune before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
			}
			*step.total += n
			if n < int64(s.pruneBatch) {
				break
			}
		}
	}
	return entries, messages, nil
}
