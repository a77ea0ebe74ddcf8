// DynamoDB Local bound to 127.0.0.1 only: its own launcher (DynamoDBLocal.jar's main) listens
// on every interface and has no option to choose one. In memory, one database for every
// credential and region (as `-inMemory -sharedDb`), no telemetry (the launcher's telemetry
// is sent from DynamoDBProxyServer.start, which is not called). Prints the port it took.
import com.amazonaws.services.dynamodbv2.local.server.DynamoDBProxyServer;
import com.amazonaws.services.dynamodbv2.local.server.LocalDynamoDBRequestHandler;
import com.amazonaws.services.dynamodbv2.local.server.LocalDynamoDBServerHandler;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

public class DynamoDbLoopback {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        var requests = new LocalDynamoDBRequestHandler(0, true, null, true, false);
        var handler = new LocalDynamoDBServerHandler(requests, null);
        var server = new Server();
        var connector = new ServerConnector(server);
        connector.setHost("127.0.0.1");
        connector.setPort(port);
        server.addConnector(connector);
        server.setHandler(new DynamoDBProxyServer(port, handler).setUpHandler(handler));
        server.start();
        System.out.println("listening on 127.0.0.1:" + connector.getLocalPort());
        System.out.flush();
        server.join();
    }
}
