package chatclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/natter-chat/natter/shared/backoff"
	"github.com/natter-chat/natter/shared/wire"
)

// Transient reports whether a failed Login or Register is worth trying
// again: no connection in time (the gateway refused or is not there yet),
// the connection lost under it, or the gateway answered that a service is
// unavailable (errno 110), that it is stopping (113) or full (118).
// Wrong credentials, a taken name or a closed client are not.
func Transient(err error) bool {
	var le *LoginError
	switch {
	case err == nil, errors.Is(err, ErrClosed), errors.Is(err, context.Canceled):
		return false
	case errors.As(err, &le):
		return le.Errno == wire.Unavailable || le.Errno == wire.GatewayStopping || le.Errno == wire.ServerFull
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errConnLost) || errors.Is(err, errNotSent)
}

// Retrying runs op, each try with a context of Config.Timeout, until it
// succeeds, fails for good (not Transient), ctx ends or bound has passed
// (then it returns the last error). Between tries it waits as the
// connection loop does between connections (Config.MinBackoff doubling up
// to Config.MaxBackoff, with jitter): what the interactive client does
// for a gateway that refuses for a moment, for a script's first login.
func (c *Client) Retrying(ctx context.Context, bound time.Duration, op func(ctx context.Context) error) error {
	bctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	b := c.newBackoff()
	for tries := 1; ; tries++ {
		tctx, tcancel := context.WithTimeout(bctx, c.cfg.Timeout)
		err := op(tctx)
		tcancel()
		if !Transient(err) {
			return err
		}
		if bctx.Err() != nil {
			if ctx.Err() != nil {
				return err
			}
			return fmt.Errorf("gave up after %d tries in %v: %w", tries, bound, err)
		}
		pause := b.Next()
		c.log.Info("retrying", "err", err, "wait", pause)
		backoff.Sleep(bctx, pause)
	}
}
