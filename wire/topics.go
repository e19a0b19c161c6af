package wire

import "github.com/wardgate/wardgate/wire/envelope"

// TopicPrefix is the root of every wardgate topic.
const TopicPrefix = "wardgate/v1/"

// Topic returns wardgate/v1/GATEWAY/KIND. Replies go to .../cmd/reply.
func Topic(gateway string, kind envelope.Kind) string {
	if kind == envelope.KindReply {
		return TopicPrefix + gateway + "/cmd/reply"
	}
	return TopicPrefix + gateway + "/" + string(kind)
}

// CommandTopic returns wardgate/v1/GATEWAY/cmd.
func CommandTopic(gateway string) string { return TopicPrefix + gateway + "/cmd" }
