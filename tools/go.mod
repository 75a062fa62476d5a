module github.com/natter-chat/natter/tools

go 1.26.8

require (
	github.com/natter-chat/natter/shared v0.0.0
	github.com/natter-chat/natter/gateway v0.0.0
	github.com/natter-chat/natter/services/user v0.0.0
	github.com/natter-chat/natter/services/offline v0.0.0
)

replace (
	github.com/natter-chat/natter/shared => ../shared
	github.com/natter-chat/natter/gateway => ../gateway
	github.com/natter-chat/natter/services/user => ../services/user
	github.com/natter-chat/natter/services/offline => ../services/offline
)
