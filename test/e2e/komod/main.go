// komod: the tiny program test/e2e/ko_test.sh builds as ko would.
package main

import "fmt"

func main() {
	fmt.Println("hello from komod")
}
