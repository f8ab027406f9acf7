package testsignal

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSignalIsInertUntilInit(t *testing.T) {
	t.Parallel()
	var s Signal[int]
	s.Signal(1) // must neither block nor panic
}

func TestSignalDeliversInOrder(t *testing.T) {
	t.Parallel()
	var s Signal[int]
	s.Init(t)
	s.Signal(1)
	s.Signal(2)
	s.Signal(3)
	require.Equal(t, 1, s.WaitOrTimeout())
	require.Equal(t, 3, s.WaitUntil(DefaultTimeout, func(v int) bool { return v == 3 }))
}
