package imap

import (
	"strings"
	"testing"
	"time"

	"github.com/popmigrate/popmigrate/exporters/internal/mailhdr"
)

func TestInternalDateParsing(t *testing.T) {
	dl := time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name, header string
		want         time.Time
	}{
		{"DateTrailingComment", "Date: Mon, 3 Feb 2025 08:00:00 +0000 (Coordinated Universal Time)\n",
			time.Date(2025, 2, 3, 8, 0, 0, 0, time.UTC)},
		{"DateZoneNameAfterOffset", "Date: Mon, 3 Feb 2025 08:00:00 +0100 CET\n",
			time.Date(2025, 2, 3, 7, 0, 0, 0, time.UTC)},
		{"ReceivedWithoutSemicolon", "Received: from a by b\nDate: Mon, 3 Feb 2025 08:00:00 +0000\n",
			time.Date(2025, 2, 3, 8, 0, 0, 0, time.UTC)},
		{"ReceivedNewestWins", "Received: x; Mon, 3 Feb 2025 08:00:00 +0000\nReceived: y; Mon, 3 Feb 2025 09:00:00 +0000\n",
			time.Date(2025, 2, 3, 9, 0, 0, 0, time.UTC)},
		{"GarbageDate", "Date: yesterday\n", dl},
		{"AncientDate", "Date: Mon, 3 Feb 1975 08:00:00 +0000\n", dl},
		{"CRLFHeader", "Date: Mon, 3 Feb 2025 08:00:00 +0000\r\n", time.Date(2025, 2, 3, 8, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := internalDate(DateFromReceived, mailhdr.Read([]byte(tt.header)), dl); !got.Equal(tt.want) {
				t.Errorf("%v, want %v", got, tt.want)
			}
		})
	}
}

func TestMessageID(t *testing.T) {
	tests := map[string]string{
		"Message-ID: <a@b>\n":                            "<a@b>",
		"message-id:\n <folded@b>\n":                     "<folded@b>",
		"Subject: x\n":                                   "",
		"Message-ID: <\xe9@b>\n":                         "",
		"Message-ID: " + strings.Repeat("x", 600) + "\n": "",
	}
	for header, want := range tests {
		if got := messageID(mailhdr.Read([]byte(header))); got != want {
			t.Errorf("messageID(%q) = %q, want %q", header, got, want)
		}
	}
}
