package middleware

import (
	"runtime/debug"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/arcmill/arcmill/wildcard"
)

// Recoverer turns a handler's panic into a *wildcard.PanicError, the error
// the wildcard router gives a panic: its message is "panic: <value>",
// without the stack, because handler errors reach logs and poison queues,
// which leave the process. The stack is kept in PanicError.Stack, and
// DeadLetter writes it only with IncludeStack. Stack uses it in place of
// Watermill's Recoverer, whose error message carries the whole stack.
func Recoverer(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (out []*message.Message, err error) {
		defer func() {
			if p := recover(); p != nil {
				out, err = nil, &wildcard.PanicError{Value: p, Stack: string(debug.Stack())}
			}
		}()
		return h(msg)
	}
}
