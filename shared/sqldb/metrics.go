package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"modernc.org/sqlite"
)

// Operations observed (the op label).
const (
	opTx     = "tx"      // InTx, InTxOpts: the whole transaction, retries included
	opReadTx = "read_tx" // ReadTx
	opRead   = "read"    // ReadQuery, ReadQueryRow (until the first row)
	opExec   = "exec"    // ExecContext outside a transaction
)

// Error kinds (the kind label).
const (
	kindTimeout   = "timeout"   // the context ended (deadline or cancel)
	kindConflict  = "conflict"  // deadlock, lock wait timeout, busy (InTx retries these)
	kindDuplicate = "duplicate" // unique key violation
	kindFull      = "full"      // the storage is full (IsFull)
	kindDatabase  = "database"  // any other error of the driver or the database
)

// Metrics counts a service's database work: how long each operation took
// and which ones failed, by kind. Build it with NewMetrics and hand it to
// DB.WithMetrics.
type Metrics struct {
	seconds *prometheus.HistogramVec
	errors  *prometheus.CounterVec
	retries prometheus.Counter
}

// NewMetrics registers the database metrics of service on reg:
//
//   - natter_db_operation_duration_seconds{service, op}: transactions (op
//     tx, retries included, read_tx), reads outside a transaction (read)
//     and writes outside one (exec);
//   - natter_db_errors_total{service, op, kind}: failed operations and
//     attempts, kind timeout, conflict, duplicate, full or database; errors a
//     transaction's function returns that are not the database's (a
//     domain error) are not counted;
//   - natter_db_tx_retries_total{service}: transaction attempts repeated
//     after a conflict.
func NewMetrics(reg prometheus.Registerer, service string) (*Metrics, error) {
	labels := prometheus.Labels{"service": service}
	m := &Metrics{
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "natter_db_operation_duration_seconds",
			Help:        "Time of database operations: transactions (op tx, retries included; read_tx), reads (read) and writes (exec) outside a transaction.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(0.0001, 2.5, 12), // 100 µs to ~6 s
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "natter_db_errors_total",
			Help:        "Failed database operations and transaction attempts by kind: timeout, conflict, duplicate, full (no space left) or database.",
			ConstLabels: labels,
		}, []string{"op", "kind"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "natter_db_tx_retries_total",
			Help:        "Transaction attempts repeated after a conflict (deadlock, lock wait timeout, busy).",
			ConstLabels: labels,
		}),
	}
	for _, c := range []prometheus.Collector{m.seconds, m.errors, m.retries} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register database metrics: %w", err)
		}
	}
	return m, nil
}

// observe records one operation that started at start and ended with err;
// fallback is err's kind when it is not recognized ("": not a database
// error, not counted). m may be nil.
func (m *Metrics) observe(op string, start time.Time, err error, fallback string) {
	if m == nil {
		return
	}
	m.seconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	m.failed(op, err, fallback)
}

// failed counts err, if it is a database error.
func (m *Metrics) failed(op string, err error, fallback string) {
	if m == nil || err == nil {
		return
	}
	if kind := errKind(err, fallback); kind != "" {
		m.errors.WithLabelValues(op, kind).Inc()
	}
}

func (m *Metrics) retried() {
	if m != nil {
		m.retries.Inc()
	}
}

// errKind classifies err, or returns fallback when it is none of the
// database's errors.
func errKind(err error, fallback string) string {
	var (
		me *mysql.MySQLError
		se *sqlite.Error
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return kindTimeout
	case IsRetryable(err):
		return kindConflict
	case IsDuplicate(err):
		return kindDuplicate
	case IsFull(err):
		return kindFull
	case errors.As(err, &me), errors.As(err, &se), errors.Is(err, driver.ErrBadConn),
		errors.Is(err, sql.ErrConnDone), errors.Is(err, sql.ErrTxDone), errors.Is(err, mysql.ErrInvalidConn):
		return kindDatabase
	}
	return fallback
}
