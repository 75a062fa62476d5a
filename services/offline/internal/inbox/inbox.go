// Package inbox is the durable per-user inbox of the offline service: for
// every recipient of a chat message an entry with that recipient's own seq
// (contiguous, strictly increasing, starting at 1), kept until the
// recipient acknowledges it.
//
// Writes are batched: Write stores any number of messages and
// acknowledgements in one transaction with a fixed number of multi-row
// statements, which is what lets one writer keep up with many senders. A
// one-to-one message costs one entry row (the body inline); a group
// message one body row and one small entry row per recipient. A cid is
// deduplicated by a unique index of the row that holds the message. Every
// SQL statement is in sql.go.
//
// On SQLite (one writer connection per process) the writer keeps every
// inbox's last seq and the next body id in memory, so a batch reads
// nothing it wrote itself; another process committing to the same file
// makes it forget (PRAGMA data_version). On MySQL, where several instances
// share the database, the last seqs are read and advanced in the
// transaction under the inbox_state row locks.
package inbox

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/natter-chat/natter/shared/api"
	"github.com/natter-chat/natter/shared/sqldb"
)

// cidRaceRetries is how often a batch is retried after another transaction
// stored one of its (from, cid) pairs first.
const cidRaceRetries = 3

// errCIDRace marks a batch that found one of its (from, cid) pairs stored
// by another transaction.
var errCIDRace = errors.New("cid stored concurrently")

// maxMemoInboxes bounds the inboxes whose last seq the SQLite writer
// remembers; past it, it forgets them all and reads them again as needed.
const maxMemoInboxes = 1 << 20

// Store is the inbox store on a database. Its methods may be called from
// several goroutines.
type Store struct {
	db  *sqldb.DB
	log *slog.Logger
	// pruneBatch is the most entries one prune transaction deletes.
	pruneBatch int
	// memo is the SQLite writer's memory (nil on MySQL), shared by every
	// Store on the same database.
	memo *memo
	// returning: the MySQL server answers INSERT ... RETURNING (MariaDB).
	returning bool
	// limits bound each inbox (SetLimits).
	limits Limits
}

// SetLimits sets the limits of every inbox; call it before the first
// write.
func (s *Store) SetLimits(l Limits) { s.limits = l }

// memo is what the SQLite writer remembers between its transactions.
// Every Store on one sqldb.DB shares it (they share its one writer
// connection); mu is held for the whole of a write transaction.
type memo struct {
	mu sync.Mutex
	// dataVersion is PRAGMA data_version on the writer connection when
	// this memory was last known good; another connection's commit
	// changes it.
	dataVersion int64
	valid       bool
	last        map[int64]inboxState // inbox -> its state
	lastBody    int64                // highest body id; 0: not known
}

// inboxState is an inbox's row of inbox_state: its last and acknowledged
// seq, and the byte sums of its bodies up to each (see migrations, version
// 3).
type inboxState struct {
	last, acked, bytes, ackedBytes int64
}

// Limits bound what one inbox holds unacknowledged; zero fields do not
// limit.
type Limits struct {
	// Count is the most unacknowledged entries.
	Count int64
	// Bytes is the most bytes of unacknowledged bodies.
	Bytes int64
}

// fits reports whether one more entry of size bytes fits in an inbox that
// holds n entries and b bytes unacknowledged.
func (l Limits) fits(n, b, size int64) bool {
	return (l.Count <= 0 || n+1 <= l.Count) && (l.Bytes <= 0 || b+size <= l.Bytes)
}

func (m *memo) forget() {
	m.valid = false
	clear(m.last)
	m.lastBody = 0
}

// defaultPruneBatch keeps each prune transaction short: a prune never holds
// locks that stall stores for long, however much there is to delete.
const defaultPruneBatch = 5000

// New returns a Store on db. Call Migrate before using it.
func New(db *sqldb.DB, log *slog.Logger) *Store {
	s := &Store{db: db, log: log, pruneBatch: defaultPruneBatch}
	if db.Dialect == sqldb.SQLite {
		s.memo = db.Shared("offline.inbox.memo", func() any {
			return &memo{last: make(map[int64]inboxState)}
		}).(*memo)
	}
	return s
}

// Migrate creates or upgrades the inbox tables and prepares the write
// path's statements.
func (s *Store) Migrate(ctx context.Context) error {
	if err := s.db.Migrate(ctx, "offline", migrations()); err != nil {
		return err
	}
	if err := s.prepare(ctx); err != nil {
		return fmt.Errorf("prepare inbox statements: %w", err)
	}
	return nil
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

// size is what one entry of m counts against an inbox's byte limit.
func (m Pending) size() int64 { return int64(len(m.Body)) }

// Result is what storing one Pending did.
type Result struct {
	MID string
	// Duplicate is true when an earlier message (stored before, or earlier
	// in the same batch) had the same From and CID; nothing was stored.
	Duplicate bool
	// To lists the inboxes the message was stored in: Pending.To but for
	// those in Refused. Seqs[i] is the seq of the new entry in inbox To[i].
	// Both are nil for a duplicate.
	To   []int64
	Seqs []int64
	// Refused lists the recipients of a group message whose inbox was full
	// (Limits): it was stored for the others.
	Refused []int64
	// Err is set when the message was refused (api.ErrInboxFull: its
	// recipient's inbox, or every recipient's, was full) or when the batch
	// fell back to one transaction per message and this message failed;
	// the other fields are then empty.
	Err error
}

// Batch is what one write commits: messages to store and inbox
// acknowledgements.
type Batch struct {
	Stores []Pending
	Acks   []api.Ack
}

// StoreBatch stores ps in one transaction; see Write.
func (s *Store) StoreBatch(ctx context.Context, ps []Pending) ([]Result, error) {
	res, _, err := s.Write(ctx, Batch{Stores: ps})
	return res, err
}

// Write commits b and returns one Result per message, in order, and the
// outcome of the acknowledgements. Seqs are assigned in the order of
// b.Stores. On SQLite the commit does not wait for the disk: it is durable
// once Sync returns, and nothing may be acknowledged before (a crash may
// take back what was not synced).
//
// On SQLite the messages and the acknowledgements share one transaction
// (one fsync). On MySQL the acknowledgements get a transaction of their
// own after the messages': each transaction then takes its row locks in
// one ascending pass, so writers never deadlock.
//
// When the batch finds one of its (from, cid) stored already (another
// writer's, or a retry's on SQLite, which does not look cids up first) it
// is retried (and then answers that message as a duplicate). When it fails for
// any other reason the acknowledgements are written alone and each message
// in a transaction of its own, so one bad message cannot fail the others;
// their failures are in Result.Err. The error is non-nil only when no
// message was stored; ackErr is the acknowledgements' own.
func (s *Store) Write(ctx context.Context, b Batch) (res []Result, ackErr error, err error) {
	acks := highestAcks(b.Acks)
	if len(b.Stores) == 0 {
		return nil, s.ack(ctx, acks), nil
	}
	inTx := acks
	if s.db.Dialect != sqldb.SQLite {
		inTx = nil
	}
	res, err = s.storeRetrying(ctx, b.Stores, inTx)
	if err == nil {
		if s.db.Dialect != sqldb.SQLite {
			ackErr = s.ack(ctx, acks)
		}
		return res, ackErr, nil
	}
	if len(acks) > 0 && ctx.Err() == nil {
		ackErr = s.ack(ctx, acks)
	} else if len(acks) > 0 {
		ackErr = err
	}
	if len(b.Stores) == 1 || ctx.Err() != nil {
		return nil, ackErr, err
	}
	s.log.Warn("store batch failed, storing its messages one by one", "messages", len(b.Stores), "err", err)
	res = make([]Result, len(b.Stores))
	for i := range b.Stores {
		one, err := s.storeRetrying(ctx, b.Stores[i:i+1], nil)
		if err != nil {
			res[i].Err = err
			continue
		}
		res[i] = one[0]
	}
	return res, ackErr, nil
}

func (s *Store) storeRetrying(ctx context.Context, ps []Pending, acks []api.Ack) ([]Result, error) {
	var err error
	lookup := false // look the cids up first only once one was seen stored
	for range cidRaceRetries {
		var res []Result
		if s.memo != nil {
			res, err = s.storeSQLite(ctx, ps, acks, lookup)
		} else {
			res, err = s.storeMySQL(ctx, ps, lookup)
		}
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, errCIDRace) {
			break
		}
		lookup = true
	}
	return nil, fmt.Errorf("store %d messages: %w", len(ps), err)
}

// cidKey identifies a message by its sender's client id: one-to-one and
// group messages each have their own.
type cidKey struct {
	from  int64
	cid   string
	group bool
}

// bodyRow is a group message's row of bodies.
type bodyRow struct {
	mid  uuid.UUID
	from int64
	cid  string
	body []byte
	refs int
}

// plan is a batch being stored: which messages are new, their mids, and
// which repeat a cid.
type plan struct {
	ps  []Pending
	res []Result
	// to[i] is the recipients message i is stored for (admit).
	to    [][]int64
	mids  []uuid.UUID
	fresh []int          // indexes of ps stored now
	first map[cidKey]int // cid -> index of its first message in ps
	keys  []cidKey       // the cids of the batch, each once, in order
	// dupOf[i] is the index of an earlier message of the batch with the
	// same cid, or -1.
	dupOf []int
}

func (m Pending) key() cidKey { return cidKey{from: m.From, cid: m.CID, group: len(m.To) > 1} }

// newPlan gives every message of ps a mid, and marks those whose cid
// repeats an earlier message of the batch.
func newPlan(ps []Pending) (*plan, error) {
	p := &plan{ps: ps, res: make([]Result, len(ps)), mids: make([]uuid.UUID, len(ps)), dupOf: make([]int, len(ps)),
		to: make([][]int64, len(ps))}
	for i, m := range ps {
		p.dupOf[i] = -1
		if m.CID != "" {
			if p.first == nil {
				p.first = make(map[cidKey]int, len(ps))
			}
			k := m.key()
			if j, ok := p.first[k]; ok {
				p.dupOf[i] = j
				continue
			}
			p.first[k] = i
			p.keys = append(p.keys, k)
		}
		mid, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("new mid: %w", err)
		}
		p.mids[i] = mid
	}
	return p, nil
}

// settle marks the messages whose cid is in stored (key -> mid) as
// duplicates of what was stored before, and lists the rest as fresh.
func (p *plan) settle(stored map[cidKey]uuid.UUID) {
	p.fresh = p.fresh[:0]
	for i, m := range p.ps {
		switch {
		case p.dupOf[i] >= 0:
			continue // answered below, from its first message
		case m.CID != "":
			if mid, ok := stored[m.key()]; ok {
				p.res[i] = Result{MID: mid.String(), Duplicate: true}
				continue
			}
		}
		p.res[i] = Result{MID: p.mids[i].String()}
		p.to[i] = m.To
		p.fresh = append(p.fresh, i)
	}
}

// finish answers the messages that repeat an earlier one's cid in the
// batch as that one was answered: a duplicate of it, or refused as it
// was.
func (p *plan) finish() {
	for i, j := range p.dupOf {
		switch {
		case j < 0:
		case p.res[j].Err != nil:
			p.res[i] = Result{Err: p.res[j].Err}
		default:
			p.res[i] = Result{MID: p.res[j].MID, Duplicate: true}
		}
	}
}

// counts returns the recipients of the fresh messages (ascending, no
// duplicates) and how many entries each gets.
func (p *plan) counts() ([]int64, map[int64]int64) {
	n := make(map[int64]int64)
	for _, i := range p.fresh {
		for _, u := range p.to[i] {
			n[u]++
		}
	}
	users := make([]int64, 0, len(n))
	for u := range n {
		users = append(users, u)
	}
	slices.Sort(users)
	return users, n
}

// bytes returns the bytes of the entries of the fresh messages, by
// recipient.
func (p *plan) bytes() map[int64]int64 {
	b := make(map[int64]int64)
	for _, i := range p.fresh {
		size := p.ps[i].size()
		for _, u := range p.to[i] {
			b[u] += size
		}
	}
	return b
}

// admit applies the inbox limits to the fresh messages, in request order,
// from each recipient's state before the batch: an entry that does not fit
// its inbox is not stored. A message stored for none of its recipients is
// refused (api.ErrInboxFull) and no longer fresh; a group message stored
// for some lists the others in Refused. It reports whether anything was
// refused. state is advanced entry by entry as the check goes and put
// back at the end (no allocation unless something is refused).
func (p *plan) admit(state map[int64]*inboxState, lim Limits) bool {
	if lim == (Limits{}) {
		return false
	}
	refused := false
	fresh := p.fresh[:0]
	for _, i := range p.fresh {
		m := p.ps[i]
		size := m.size()
		var to, out []int64
		for j, u := range m.To {
			if st := state[u]; lim.fits(st.last-st.acked, st.bytes-st.ackedBytes, size) {
				st.last++
				st.bytes += size
				if out != nil {
					to = append(to, u)
				}
				continue
			}
			if out == nil {
				to = append(make([]int64, 0, len(m.To)), m.To[:j]...)
			}
			out = append(out, u)
		}
		if out == nil {
			fresh = append(fresh, i)
			continue
		}
		refused = true
		if len(to) == 0 {
			p.res[i] = Result{Err: api.ErrInboxFull}
			p.to[i] = nil
			continue
		}
		p.to[i] = to
		p.res[i].Refused = out
		fresh = append(fresh, i)
	}
	p.fresh = fresh
	for _, i := range p.fresh {
		size := p.ps[i].size()
		for _, u := range p.to[i] {
			st := state[u]
			st.last--
			st.bytes -= size
		}
	}
	return refused
}

// entries assigns the seqs of the fresh messages in request order, each
// inbox continuing after its state (which it advances: last seq and
// bytes), and returns the entries' rows as statement arguments: one-to-one
// entries (insert width 8) with their sizes, and group entries
// (insertGroupEntries). bodyID[i] is the body of group message i.
func (p *plan) entries(state map[int64]*inboxState, bodyID map[int]int64) (one []any, sizes []int, group []any) {
	for _, i := range p.fresh {
		m := p.ps[i]
		to := p.to[i]
		seqs := make([]int64, len(to))
		id, isGroup := bodyID[i]
		size := m.size()
		for j, u := range to {
			st := state[u]
			st.last++
			st.bytes += size
			seqs[j] = st.last
			if isGroup {
				group = append(group, u, seqs[j], id, st.bytes)
			} else {
				one = append(one, u, seqs[j], p.mids[i][:], m.From, nullCID(m.CID), string(m.Body), nil, st.bytes)
				sizes = append(sizes, len(m.Body)+64)
			}
		}
		p.res[i].To, p.res[i].Seqs = to, seqs
	}
	return one, sizes, group
}

// insertEntries inserts the rows entries returned and reports whether
// every row went in.
func (s *Store) insertEntries(ctx context.Context, tx *sql.Tx, one []any, sizes []int, group []any) (bool, error) {
	st, gst := insertEntriesSQLite, insertGroupEntriesSQLite
	if s.db.Dialect == sqldb.MySQL {
		st, gst = insertEntriesMySQL, insertGroupEntriesMySQL
	}
	n, err := s.execRows(ctx, tx, st, one, func(i int) int { return sizes[i] })
	if err != nil {
		return false, fmt.Errorf("insert entries: %w", err)
	}
	g, err := s.execRows(ctx, tx, gst, group, nil)
	if err != nil {
		return false, fmt.Errorf("insert entries: %w", err)
	}
	return n == int64(len(one)/st.width) && g == int64(len(group)/gst.width), nil
}

// bodies returns the body rows of the fresh group messages (more than one
// recipient), by index in ps.
func (p *plan) bodies() map[int]bodyRow {
	var out map[int]bodyRow
	for _, i := range p.fresh {
		if m := p.ps[i]; len(m.To) > 1 {
			if out == nil {
				out = make(map[int]bodyRow)
			}
			out[i] = bodyRow{mid: p.mids[i], from: m.From, cid: m.CID, body: m.Body, refs: len(p.to[i])}
		}
	}
	return out
}

// storeSQLite is one attempt at storing ps (and applying acks) in one
// transaction on SQLite. Without lookup no cid is looked up: a unique
// index skips a row whose cid is stored, which fails the attempt with
// errCIDRace (and the next looks them up first).
func (s *Store) storeSQLite(ctx context.Context, ps []Pending, acks []api.Ack, lookup bool) ([]Result, error) {
	m := s.memo
	m.mu.Lock()
	defer m.mu.Unlock()
	var (
		p        *plan
		state    map[int64]*inboxState // the new states, remembered after the commit
		acked    []ackedState
		lastBody int64
		version  int64
	)
	_, err := s.db.InTxDeferred(ctx, func(tx *sql.Tx) error { // this may run more than once
		var err error
		state, acked = nil, nil
		var users []int64
		if p, err = newPlan(ps); err != nil {
			return err
		}
		if version, err = s.dataVersion(ctx, tx); err != nil {
			return err
		}
		if m.valid && version != m.dataVersion {
			m.forget() // another process wrote to the database
		}
		// (a) Duplicates of messages stored before.
		var stored map[cidKey]uuid.UUID
		if lookup {
			for _, k := range p.keys {
				mid, ok, err := s.lookupMID(ctx, tx, k)
				if err != nil {
					return err
				}
				if ok {
					if stored == nil {
						stored = make(map[cidKey]uuid.UUID)
					}
					stored[k] = mid
				}
			}
		}
		p.settle(stored)
		if len(p.fresh) > 0 {
			// (b) The inboxes' states, from memory or read once, and the
			// limits.
			users, _ = p.counts()
			state = make(map[int64]*inboxState, len(users))
			states := make([]inboxState, len(users)) // one allocation for all
			var unknown []int64
			for k, u := range users {
				state[u] = &states[k]
				if st, ok := m.last[u]; ok && m.valid {
					states[k] = st
				} else {
					unknown = append(unknown, u)
				}
			}
			if len(unknown) > 0 {
				if err := s.readLastSQLite(ctx, tx, unknown, state); err != nil {
					return err
				}
			}
			if p.admit(state, s.limits) {
				users, _ = p.counts()
			}
		}
		if len(p.fresh) > 0 {
			// (c) Group bodies, with the next ids.
			var bodyID map[int]int64
			if bodies := p.bodies(); len(bodies) > 0 {
				lastBody = m.lastBody
				if lastBody == 0 || !m.valid {
					if lastBody, err = s.maxBodyID(ctx, tx); err != nil {
						return err
					}
				}
				bodyID = make(map[int]int64, len(bodies))
				args := make([]any, 0, 6*len(bodies))
				for _, i := range p.fresh {
					b, ok := bodies[i]
					if !ok {
						continue
					}
					lastBody++
					bodyID[i] = lastBody
					args = append(args, lastBody, b.mid[:], b.from, nullCID(b.cid), string(b.body), b.refs)
				}
				n, err := s.execRows(ctx, tx, insertBodiesSQLite, args, nil)
				if err != nil {
					return fmt.Errorf("insert bodies: %w", err)
				}
				if n != int64(len(bodies)) {
					return fmt.Errorf("insert bodies: %w", errCIDRace)
				}
			}
			// (d) The entries, seqs in request order.
			one, sizes, group := p.entries(state, bodyID)
			all, err := s.insertEntries(ctx, tx, one, sizes, group)
			if err != nil {
				return err
			}
			if !all {
				return fmt.Errorf("insert entries: %w", errCIDRace)
			}
			// (e) The new last seqs and bytes.
			args := make([]any, 0, 3*len(users))
			for _, u := range users {
				args = append(args, u, state[u].last, state[u].bytes)
			}
			if _, err := s.execRows(ctx, tx, setLastSQLite, args, nil); err != nil {
				return fmt.Errorf("write last seqs: %w", err)
			}
		}
		p.finish()
		// (f) The acknowledgements.
		acked, err = s.ackSQLite(ctx, tx, acks)
		return err
	})
	if err != nil {
		m.forget()
		return nil, err
	}
	if !m.valid {
		m.valid, m.dataVersion = true, version
	}
	if len(m.last)+len(state) > maxMemoInboxes {
		clear(m.last)
	}
	for u, st := range state {
		m.last[u] = *st
	}
	m.remember(acked)
	if lastBody > 0 {
		m.lastBody = lastBody
	}
	return p.res, nil
}

// ackedState is an inbox's acknowledged seq and bytes after an ack.
type ackedState struct {
	user, acked, ackedBytes int64
}

// remember updates the states the writer remembers with acks committed.
func (m *memo) remember(acked []ackedState) {
	for _, a := range acked {
		if st, ok := m.last[a.user]; ok {
			st.acked, st.ackedBytes = a.acked, a.ackedBytes
			m.last[a.user] = st
		}
	}
}

// ackSQLite applies acks (one per user) in tx and returns the inboxes'
// new acknowledged states.
func (s *Store) ackSQLite(ctx context.Context, tx *sql.Tx, acks []api.Ack) ([]ackedState, error) {
	if len(acks) == 0 {
		return nil, nil
	}
	args := make([]any, 0, 2*len(acks))
	for _, a := range acks {
		args = append(args, a.UserID, a.Seq)
	}
	out := make([]ackedState, 0, len(acks))
	err := s.queryRows(ctx, tx, ackSQLite, args, func(rows *sql.Rows) error {
		var a ackedState
		if err := rows.Scan(&a.user, &a.acked, &a.ackedBytes); err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("update acknowledged seqs: %w", err)
	}
	return out, nil
}

// storeMySQL is one attempt at storing ps in one transaction on MySQL.
// Without lookup no cid is looked up: a unique index refuses a cid stored
// already, which fails the attempt with errCIDRace (and the next looks
// them up first).
func (s *Store) storeMySQL(ctx context.Context, ps []Pending, lookup bool) ([]Result, error) {
	var p *plan
	err := s.db.InTx(ctx, func(tx *sql.Tx) error { // InTx may run this more than once
		var err error
		if p, err = newPlan(ps); err != nil {
			return err
		}
		defer p.finish()
		// (a) Messages whose cid is already stored.
		var stored map[cidKey]uuid.UUID
		if lookup && len(p.keys) > 0 {
			if stored, err = s.lookupCIDsMySQL(ctx, tx, p.keys); err != nil {
				return err
			}
		}
		p.settle(stored)
		if len(p.fresh) == 0 {
			return nil
		}
		// (b) Lock and advance the recipients' last seqs and bytes,
		// ascending; the states before the batch are where its entries
		// start.
		users, counts := p.counts()
		bytes := p.bytes()
		state, err := s.addLastMySQL(ctx, tx, users, counts, bytes)
		if err != nil {
			return err
		}
		for u, st := range state {
			st.last -= counts[u]
			st.bytes -= bytes[u]
		}
		// (c) The limits: what does not fit is taken back (the rows are
		// this transaction's already).
		if p.admit(state, s.limits) {
			_, kept := p.counts()
			keptBytes := p.bytes()
			back, backBytes := make(map[int64]int64), make(map[int64]int64)
			var changed []int64
			for _, u := range users {
				if kept[u] != counts[u] {
					changed = append(changed, u)
					back[u], backBytes[u] = kept[u]-counts[u], keptBytes[u]-bytes[u]
				}
			}
			if _, err := s.addLastMySQL(ctx, tx, changed, back, backBytes); err != nil {
				return err
			}
			if len(p.fresh) == 0 {
				return nil
			}
		}
		// (d) Group bodies. A cid stored already (or concurrently, by
		// another transaction) fails the insert and the batch is tried
		// again.
		bodyID := make(map[int]int64)
		for i, b := range p.bodies() {
			if bodyID[i], err = s.insertBodyMySQL(ctx, tx, b); err != nil {
				return cidRace(err)
			}
		}
		// (e) The entries, seqs in request order.
		one, sizes, group := p.entries(state, bodyID)
		if _, err := s.insertEntries(ctx, tx, one, sizes, group); err != nil {
			return cidRace(err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p.res, nil
}

// cidRace marks a unique-key violation as a lost race for a cid.
func cidRace(err error) error {
	if sqldb.IsDuplicate(err) {
		return fmt.Errorf("%w: %w", errCIDRace, err)
	}
	return err
}

// highestAcks returns one ack per user, the highest, sorted by user id
// (the lock order of every writer).
func highestAcks(acks []api.Ack) []api.Ack {
	if len(acks) == 0 {
		return nil
	}
	high := make(map[int64]int64, len(acks))
	for _, a := range acks {
		if seq, ok := high[a.UserID]; !ok || a.Seq > seq {
			high[a.UserID] = a.Seq
		}
	}
	out := make([]api.Ack, 0, len(high))
	for u, seq := range high {
		out = append(out, api.Ack{UserID: u, Seq: seq})
	}
	slices.SortFunc(out, func(a, b api.Ack) int { return cmp.Compare(a.UserID, b.UserID) })
	return out
}

// Commits returns the number of the last commit finished (SQLite; 0 on
// MySQL), for WaitSynced.
func (s *Store) Commits() uint64 { return s.db.Commits() }

// WaitSynced returns once a Sync (someone else's) has made commit number n
// durable.
func (s *Store) WaitSynced(n uint64) { s.db.WaitSynced(n) }

// Sync returns once every write committed so far is durable (on SQLite:
// one sync of the WAL for all of them, shared with concurrent callers; on
// MySQL a commit is durable when it returns).
func (s *Store) Sync() error {
	if err := s.db.SyncWAL(); err != nil {
		return fmt.Errorf("sync inbox writes: %w", err)
	}
	return nil
}

// Ack acknowledges inboxes cumulatively, in one transaction (on SQLite
// durable once Sync returns): each inbox's
// acknowledged seq becomes min(seq, last seq) unless it is already higher.
// Several acks for one user count as the highest of them; acks for inboxes
// that do not exist change nothing.
func (s *Store) Ack(ctx context.Context, acks []api.Ack) error {
	return s.ack(ctx, highestAcks(acks))
}

// ack is Ack for acks already reduced by highestAcks.
func (s *Store) ack(ctx context.Context, acks []api.Ack) error {
	if len(acks) == 0 {
		return nil
	}
	var err error
	if m := s.memo; m != nil {
		m.mu.Lock()
		var acked []ackedState
		_, err = s.db.InTxDeferred(ctx, func(tx *sql.Tx) error {
			var err error
			acked, err = s.ackSQLite(ctx, tx, acks)
			return err
		})
		if err != nil {
			m.forget()
		} else {
			m.remember(acked)
		}
		m.mu.Unlock()
	} else {
		err = s.db.InTx(ctx, func(tx *sql.Tx) error { return s.updateAcksMySQL(ctx, tx, acks) })
	}
	if err != nil {
		return fmt.Errorf("ack %d inboxes: %w", len(acks), err)
	}
	return nil
}

// Fetch returns user's inbox entries after seq after (after < 0: after the
// acknowledged seq) in seq order: at most limit entries, and no more once
// their bodies pass maxBytes (the first entry is always returned). It also
// returns the acknowledged and last seq; entries are never past that last.
func (s *Store) Fetch(ctx context.Context, user, after int64, limit, maxBytes int) (*api.FetchResponse, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("fetch inbox %d: limit %d is not positive", user, limit)
	}
	var (
		acked, last int64
		msgs        []api.InboxMessage
	)
	read := func(q querier) error {
		var err error
		if acked, last, err = s.selectState(ctx, q, user); err != nil {
			return err
		}
		// SQLite: what this read sees was committed, maybe not synced
		// yet (Write); it is handed out only once synced.
		if err := s.db.WaitDurable(); err != nil {
			return err
		}
		if after < 0 {
			after = acked
		}
		msgs, err = s.selectEntries(ctx, q, user, after, last, limit, maxBytes)
		return err
	}
	var err error
	if s.memo != nil {
		// One snapshot for both reads, so that the wait covers both.
		err = s.db.ReadTx(ctx, func(tx *sql.Tx) error { return read(txQuerier{s.db, tx}) })
	} else {
		err = read(s.db)
	}
	if err != nil {
		return nil, fmt.Errorf("fetch inbox %d: %w", user, err)
	}
	return &api.FetchResponse{Messages: msgs, Acked: acked, Last: last}, nil
}

// prunePage is how many inboxes one step of a prune looks at.
const prunePage = 256

// Prune deletes acknowledged entries once their acknowledgement is older
// than the retention: every prune first deletes, in each inbox, the
// entries up to the seq it had acknowledged when an earlier prune marked
// it, if that mark was set at or before cutoff; then it marks every inbox
// that has acknowledged more since its last mark, at now. Unacknowledged
// entries are never deleted, whatever their age. With them go the group
// bodies no entry points at any more. Entries are deleted in transactions of at most pruneBatch.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (entries, messages int64, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("prune before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
		}
	}()
	// Marks first: with no retention, what is acknowledged now goes now.
	if err := s.markAcked(ctx, time.Now().UnixMilli()); err != nil {
		return 0, 0, err
	}
	opts := &sql.TxOptions{}
	if s.db.Dialect == sqldb.MySQL {
		// No gap locks: stores append after the deleted range meanwhile.
		opts.Isolation = sql.LevelReadCommitted
	}
	for from := int64(0); ; {
		due, err := s.selectPruneDue(ctx, from, cutoff.UnixMilli(), prunePage)
		if err != nil {
			return entries, messages, err
		}
		for _, d := range due {
			for lo := d.pruned; lo < d.mark; {
				hi := min(d.mark, lo+int64(s.pruneBatch))
				var e, m int64
				err := s.db.InTxOpts(ctx, opts, func(tx *sql.Tx) error {
					var err error
					e, m, err = s.pruneRange(ctx, tx, d.user, lo, hi)
					return err
				})
				if err != nil {
					return entries, messages, fmt.Errorf("inbox %d: %w", d.user, err)
				}
				entries, messages, lo = entries+e, messages+m, hi
			}
		}
		if len(due) < prunePage {
			return entries, messages, nil
		}
		from = due[len(due)-1].user
	}
}
