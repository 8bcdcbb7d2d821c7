package ocicache.e2e.lib;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;

import org.junit.Test;

public class GreeterTest {
  @Test
  public void greets() {
    assertEquals("hello, world", new Greeter().greet("world"));
  }

  @Test
  public void checksumDiffers() {
    assertNotEquals(Checksum.of("a"), Checksum.of("b"));
  }
}
