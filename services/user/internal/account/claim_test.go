package account_test

import (
	"context"

	"github.com/natter-chat/natter/services/user/internal/account"
)

// claimSession makes sessionID on gatewayID the session of userID as of
// now: one claim, as a login makes (see ClaimSessions).
func claimSession(ctx context.Context, s *account.Store, userID int64, sessionID, gatewayID string, now int64, policy account.Policy) (replaced string, wasLive bool, err error) {
	c := &account.Claim{UserID: userID, SessionID: sessionID, GatewayID: gatewayID, Now: now, Policy: policy}
	if err := s.ClaimSessions(ctx, []*account.Claim{c}); err != nil {
		return "", false, err
	}
	return c.Replaced, c.WasLive, c.Err
}
